"""Hello world on the default store (LMDB): a run that talks, waits, asks a question, and is resumed.

    python examples/01_hello_world.py

The run is checkpointed after every step in the default LMDB directory (printed below), so it could be resumed
by another process -- see 02_ask_and_resume.py for exactly that.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import structlog

from abstractruntime import Effect, EffectType, Runtime, StepPlan, WorkflowSpec

# Examples may configure logging; the library never does. Show info and above.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


def hello(run, ctx):
    return StepPlan(
        node_id="hello",
        effect=Effect(type=EffectType.ANSWER_USER, payload={"message": "Hello, world!"}, result_key="said"),
        next_node="pause",
    )


def pause(run, ctx):
    until = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
    return StepPlan(node_id="pause", effect=Effect(type=EffectType.WAIT_UNTIL, payload={"until": until}),
                    next_node="ask")


def ask(run, ctx):
    return StepPlan(
        node_id="ask",
        effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "What is your name?"}, result_key="answer"),
        next_node="done",
    )


def done(run, ctx):
    return StepPlan(node_id="done", complete_output={"greeting": f"Nice to meet you, {run.vars['answer']['text']}!"})


WORKFLOW = WorkflowSpec(workflow_id="hello_world", entry_node="hello",
                        nodes={"hello": hello, "pause": pause, "ask": ask, "done": done})


def main() -> None:
    import time

    with Runtime() as runtime:  # nothing configured: LMDB in the default directory
        print(f"store: {runtime.run_store.backend.path}")
        run_id = runtime.start(workflow=WORKFLOW)
        state = runtime.tick(workflow=WORKFLOW, run_id=run_id)
        print(f"said: {state.vars['said']['message']!r}; now {state.status.value} ({state.waiting.reason.value})")

        time.sleep(1.1)  # the timer is due: the next tick continues the run
        state = runtime.tick(workflow=WORKFLOW, run_id=run_id)
        print(f"{state.status.value}: {state.waiting.prompt}")

        state = runtime.resume(workflow=WORKFLOW, run_id=run_id, wait_key=state.waiting.wait_key,
                               payload={"text": "Ada"})
        print(f"{state.status.value}: {state.output['greeting']}")

        print("ledger:")
        for row in runtime.get_ledger(run_id):
            effect = (row["effect"] or {}).get("type", "-")
            print(f"  {row['status']:<9} {row['node_id']:<6} {effect}")


if __name__ == "__main__":
    main()
