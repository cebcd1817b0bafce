"""A workflow with a side-effecting 'charge' effect, used by the crash tests (imported in subprocesses too).

The charge handler talks to a tiny "payment provider" -- a directory of files -- that de-duplicates by the
idempotency key it is given, the way a real API with an Idempotency-Key header would.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from abstractruntime import Effect, EffectHandlerDescriptor, EffectOutcome, StepPlan, WorkflowSpec, hookimpl


class PaymentsPlugin:
    __name__ = "payments"

    def __init__(self, provider_dir: str, *, hang_after_charge: bool = False, hold_until: str = "") -> None:
        self.dir = Path(provider_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hang = hang_after_charge
        self.hold_until = Path(hold_until) if hold_until else None

    def charge(self, call):
        attempts = self.dir / "attempts.log"
        with attempts.open("a") as fh:  # every execution, de-duplicated or not
            fh.write(call.idempotency_key + "\n")
        deadline = time.monotonic() + 60
        while self.hold_until is not None and not self.hold_until.exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # a slow provider: the test lets another process try the same step meanwhile
        receipt = self.dir / f"{call.idempotency_key}.json"
        if not receipt.exists():  # the provider charges once per idempotency key
            receipt.write_text(json.dumps({"charged": call.effect.payload["amount"], "pid": os.getpid()}))
            with (self.dir / "charges.log").open("a") as fh:
                fh.write(call.idempotency_key + "\n")
        if self.hang:
            (self.dir / "in_effect").write_text("1")
            time.sleep(600)  # the test kills us here: after the side effect, before the outcome is recorded
        return EffectOutcome.completed(json.loads(receipt.read_text()))

    @hookimpl
    def abstractruntime_register_effect_handlers(self):
        return [EffectHandlerDescriptor("charge", self.charge, side_effects=True)]


def _charge(run, ctx):
    return StepPlan(node_id="charge", effect=Effect("charge", {"amount": 42}, "receipt"), next_node="done")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"receipt": run.vars["receipt"]})


FLOW = WorkflowSpec(workflow_id="checkout", entry_node="charge", nodes={"charge": _charge, "done": _done})
