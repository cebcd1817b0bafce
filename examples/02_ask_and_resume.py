"""Durability across processes: start a run that asks a question, stop, answer it later from a new process.

    python examples/02_ask_and_resume.py start            # prints the run id, then exits while the run waits
    python examples/02_ask_and_resume.py answer RUN_ID Ada  # a new process resumes the run to completion

The store is the default LMDB directory unless ABSTRACTRUNTIME_STORE says otherwise (e.g. lmdb:///tmp/demo).
"""

from __future__ import annotations

import sys

from abstractruntime import Effect, EffectType, Runtime, StepPlan, WorkflowSpec


def ask(run, ctx):
    return StepPlan(
        node_id="ask",
        effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "Who should we greet?"}, result_key="answer"),
        next_node="greet",
    )


def greet(run, ctx):
    return StepPlan(node_id="greet", complete_output={"greeting": f"Hello, {run.vars['answer']['text']}!"})


WORKFLOW = WorkflowSpec(workflow_id="ask_and_resume", entry_node="ask", nodes={"ask": ask, "greet": greet})


def main(argv: list) -> int:
    with Runtime.from_config() as runtime:
        if argv[:1] == ["start"]:
            run_id = runtime.start(workflow=WORKFLOW)
            state = runtime.tick(workflow=WORKFLOW, run_id=run_id)
            print(run_id)
            print(f"{state.status.value}: {state.waiting.prompt}", file=sys.stderr)
            return 0
        if argv[:1] == ["answer"] and len(argv) == 3:
            run_id, text = argv[1], argv[2]
            state = runtime.get_state(run_id)
            state = runtime.resume(workflow=WORKFLOW, run_id=run_id, wait_key=state.waiting.wait_key,
                                   payload={"text": text})
            print(f"{state.status.value}: {state.output['greeting']}")
            return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
