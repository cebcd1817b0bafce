"""Async workflows and steps of the durable-functions tests (``async def``, awaited durable calls), importable by
other processes too. ``charge_async`` talks to the fake payment provider of ``fn_flows`` (``FN_TEST_PROVIDER``)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

from abstractruntime.functional import current_step, step, workflow

from fn_flows import _provider, note


@step
async def charge_async(customer_id: str, cents: int) -> dict:
    key = current_step().idempotency_key
    await asyncio.sleep(0)  # a real await: the step is a coroutine awaited by the runtime
    with (_provider() / "attempts.log").open("a") as fh:
        fh.write(key + "\n")
    receipt = _provider() / f"{key}.json"
    if not receipt.exists():
        receipt.write_text(json.dumps({"customer": customer_id, "cents": cents, "pid": os.getpid()}))
        with (_provider() / "charges.log").open("a") as fh:
            fh.write(key + "\n")
    return dict(json.loads(receipt.read_text()), thread=threading.current_thread().name)


@step
async def pause(tag: str, seconds: float) -> dict:
    """Awaits ``asyncio.sleep(seconds)`` and says when it ran (wall clock), to show steps of runs overlapping."""
    start = time.time()
    await asyncio.sleep(seconds)
    return {"tag": tag, "start": start, "end": time.time()}


@workflow("fn_async_onboarding")
async def async_onboarding(ctx, customer_id: str):
    started = ctx.now()  # recorded values stay plain calls
    plan = await ctx.ask_user("Which plan?", choices=["basic", "pro"])
    receipt = await charge_async(customer_id, 900 if plan == "basic" else 4900)
    tag = await note(f"welcome:{plan}")  # a sync @step, awaited in an async workflow
    await ctx.sleep(seconds=0)
    return {"plan": plan, "receipt": receipt, "tag": tag, "started": started.isoformat()}


@workflow("fn_async_pause")
async def async_pause(ctx, tag: str, seconds: float):
    return await pause(tag, seconds)
