"""A durable function across processes: ask a person, charge once, wait on a timer, finish -- written as one plain
Python function (docs/functional.md).

    python examples/04_functional_onboarding.py start ada         # prints the run id; the run waits for an answer
    python examples/04_functional_onboarding.py answer RUN_ID pro # a new process: charges, then waits on the timer
    python examples/04_functional_onboarding.py tick RUN_ID       # once the timer is due: the run completes

The store is the default LMDB directory unless ABSTRACTRUNTIME_STORE says otherwise (e.g. lmdb:///tmp/demo). The
timer lasts ONBOARDING_DELAY_S seconds (default 2; read by `start` into the run's vars: the body itself must not
read the environment, a replay must see what the first run saw). Each command replays the function from its record:
the charge runs once whatever happens, and the welcome note's id is the same in every process.
"""

from __future__ import annotations

import json
import os
import sys

from abstractruntime import Runtime
from abstractruntime.functional import current_step, step, workflow

PRICES = {"basic": 900, "pro": 4900}


@step(name="onboarding.charge", retries=2, backoff_s=0.5)  # a stable name: found in any process
def charge(customer: str, cents: int) -> dict:
    # A real payment API would receive the key as its Idempotency-Key header: a retry after a crash is a no-op there.
    return {"customer": customer, "cents": cents, "idempotency_key": current_step().idempotency_key}


@workflow("functional_onboarding")
def onboarding(ctx, customer: str, delay_s: float = 2.0):
    plan = ctx.ask_user(f"Which plan for {customer}?", choices=sorted(PRICES))
    receipt = charge(customer, PRICES[plan])
    ctx.sleep(seconds=delay_s)  # a durable timer: the process may exit meanwhile
    return {"customer": customer, "plan": plan, "charged": receipt["cents"], "note_id": ctx.uuid()}


def _show(state) -> None:
    if state.status.value == "waiting":
        what = state.waiting.prompt or f"the timer, due {state.waiting.until}"
        print(f"waiting: {what}")
    else:
        print(f"{state.status.value}: {json.dumps(state.output or state.error)}")


def main(argv: list) -> int:
    with Runtime.from_config() as runtime:
        if argv[:1] == ["start"] and len(argv) == 2:
            delay_s = float(os.environ.get("ONBOARDING_DELAY_S", "2"))
            run_id = runtime.start(workflow=onboarding, vars={"customer": argv[1], "delay_s": delay_s})
            state = runtime.tick(workflow=onboarding, run_id=run_id)
            print(run_id)
            print(f"{state.status.value}: {state.waiting.prompt}", file=sys.stderr)
            return 0
        if argv[:1] == ["answer"] and len(argv) == 3:
            state = runtime.get_state(argv[1])
            _show(runtime.resume(workflow=onboarding, run_id=argv[1], wait_key=state.waiting.wait_key,
                                 payload={"response": argv[2]}))
            return 0
        if argv[:1] == ["tick"] and len(argv) == 2:
            _show(runtime.tick(workflow=onboarding, run_id=argv[1]))
            return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
