"""Workflows and steps of the durable-functions tests, importable by the child processes they start.

``charge`` talks to a fake payment provider -- the directory named by ``FN_TEST_PROVIDER`` -- that charges once per
idempotency key (as a real API with an Idempotency-Key header does) and logs every attempt.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from abstractruntime.functional import current_step, step, workflow


def _provider() -> Path:
    return Path(os.environ["FN_TEST_PROVIDER"])


def lines(path: Path) -> list:
    return path.read_text().split() if path.exists() else []


@step
def charge(customer_id: str, cents: int) -> dict:
    key = current_step().idempotency_key
    with (_provider() / "attempts.log").open("a") as fh:
        fh.write(key + "\n")
    receipt = _provider() / f"{key}.json"
    if not receipt.exists():
        receipt.write_text(json.dumps({"customer": customer_id, "cents": cents, "pid": os.getpid()}))
        with (_provider() / "charges.log").open("a") as fh:
            fh.write(key + "\n")
    return json.loads(receipt.read_text())


@step
def note(tag: str) -> str:
    """Appends ``tag`` to the provider's notes.log (a visible side effect per execution)."""
    with (_provider() / "notes.log").open("a") as fh:
        fh.write(tag + "\n")
    return tag


@workflow("fn_checkout")
def checkout(ctx, customer_id: str):
    receipt = charge(customer_id, 900)
    ctx.sleep(seconds=0)
    return {"receipt": receipt}


@workflow("fn_onboarding")
def onboarding(ctx, customer_id: str):
    started = ctx.now()
    plan = ctx.ask_user("Which plan?", choices=["basic", "pro"])
    receipt = charge(customer_id, 900 if plan == "basic" else 4900)
    ctx.sleep(seconds=0)
    return {"plan": plan, "receipt": receipt, "started": started.isoformat(), "token": ctx.uuid()}
