"""AsyncRuntime in an asyncio host, on fsync-durable LMDB (the default store and durability), against the issue's
targets (issue 17, docs/asyncio.md):

A1  runs/s    human-in-the-loop runs (start -> tick to ASK_USER -> resume to completion) driven by 16 concurrent
              tasks, beside one task: target >= 3x
A2  loop lag  a 1 ms heartbeat task while the 16 tasks run: target p99 <= 20 ms, max <= 100 ms
A3  seconds   16 runs that each await a 0.3 s async side effect: target <= 1.5 s in total
B   baseline  the issue's setup: the sync Runtime called directly from the 16 tasks (it blocks the loop), with
              the same heartbeat -- what AsyncRuntime removes
C   ceiling   A1 without fsync (LMDB ``?sync=false``), one task and 16: how much of A1 is CPU (the GIL) rather than
              waiting for the disk; A1's ratio cannot exceed what the disk wait leaves to overlap

Run: python benchmarks/async_runtime.py [--runs 400] [--trials 3] [--quick] [--dir DIR] [--json] [--cpus N]
The store lives in a fresh directory under --dir (default: the system temporary directory; use a real disk, the
figures are fsync-bound). Figures are medians of --trials. ``--cpus N`` confines the process (the loop and the
worker threads) to N of the CPUs it may use (docs/benchmarks.md, "Threads and CPUs").
"""

from __future__ import annotations

import os
import sys

# This file is named like the stdlib module it uses: run as a script, its directory is sys.path[0] -- drop it
# before anything imports asyncio.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Dict, List  # noqa: E402

from abstractruntime import (AsyncRuntime, Effect, EffectHandlerDescriptor, EffectOutcome, EffectType,  # noqa: E402
                             Runtime, RunStatus, StepPlan, WorkflowSpec, hookimpl)

TASKS = 16
EFFECT_S = 0.3


def _ask(run: Any, ctx: Any) -> StepPlan:
    return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "?"}, result_key="a"),
                    next_node="done")


def _done(run: Any, ctx: Any) -> StepPlan:
    return StepPlan(node_id="done", complete_output={"a": run.vars.get("a"), "r": run.vars.get("r")})


def _slow(run: Any, ctx: Any) -> StepPlan:
    return StepPlan(node_id="slow", effect=Effect(type="sleep", payload={"s": EFFECT_S}, result_key="r"),
                    next_node="done")


ASK = WorkflowSpec(workflow_id="bench_ask", entry_node="ask", nodes={"ask": _ask, "done": _done})
SLOW = WorkflowSpec(workflow_id="bench_slow", entry_node="slow", nodes={"slow": _slow, "done": _done})


class SleepEffect:
    """``sleep``: an async, side-effecting handler (a reservation is committed before it runs)."""

    @staticmethod
    async def sleep(call: Any) -> EffectOutcome:
        await asyncio.sleep(float(call.effect.payload["s"]))
        return EffectOutcome.completed({"slept": call.effect.payload["s"]})

    @hookimpl
    def abstractruntime_register_effect_handlers(self) -> List[EffectHandlerDescriptor]:
        return [EffectHandlerDescriptor("sleep", self.sleep, "sleep asynchronously", side_effects=True)]


class Heartbeat:
    """A task sleeping 1 ms at a time; its lag is how late each wake-up is (the loop was busy or blocked)."""

    def __init__(self) -> None:
        self.lags: List[float] = []
        self._task: Any = None

    async def _beat(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lags.append(max(0.0, time.perf_counter() - t0 - 0.001))

    def __enter__(self) -> "Heartbeat":
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    def __exit__(self, *exc: Any) -> None:
        self._task.cancel()

    def figures(self) -> Dict[str, float]:
        lags = sorted(self.lags) or [0.0]
        return {"p50_ms": 1000 * lags[len(lags) // 2], "p99_ms": 1000 * lags[min(len(lags) - 1, int(len(lags) * .99))],
                "max_ms": 1000 * lags[-1], "beats": len(self.lags)}


async def _hitl_async(rt: AsyncRuntime) -> None:
    run_id = await rt.start(workflow=ASK)
    state = await rt.tick(workflow=ASK, run_id=run_id)
    state = await rt.resume(workflow=ASK, run_id=run_id, wait_key=state.waiting.wait_key, payload={"x": 1})
    assert state.status is RunStatus.COMPLETED, state.error


async def _hitl_blocking(rt: Runtime) -> None:  # the setup: sync calls inside async def
    run_id = rt.start(workflow=ASK)
    state = rt.tick(workflow=ASK, run_id=run_id)
    state = rt.resume(workflow=ASK, run_id=run_id, wait_key=state.waiting.wait_key, payload={"x": 1})
    assert state.status is RunStatus.COMPLETED, state.error
    await asyncio.sleep(0)


async def _tasks(tasks: int, runs: int, one: Callable[[], Any]) -> float:
    per = max(1, runs // tasks)

    async def worker() -> None:
        for _ in range(per):
            await one()

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(tasks)])
    return per * tasks / (time.perf_counter() - t0)


def trial(base: Path, runs: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {}

    async def main() -> None:
        url = f"lmdb://{base / 'async'}"
        async with AsyncRuntime.from_config({"store": url}, plugins=[SleepEffect()]) as rt:
            await _tasks(4, 16, lambda: _hitl_async(rt))  # warm up (threads, map, imports)
            out["one_task_runs_s"] = await _tasks(1, max(20, runs // 4), lambda: _hitl_async(rt))
            with Heartbeat() as beat:
                out["tasks16_runs_s"] = await _tasks(TASKS, runs, lambda: _hitl_async(rt))
            out["lag_16_tasks"] = beat.figures()
            ids = await asyncio.gather(*[rt.start(workflow=SLOW) for _ in range(TASKS)])
            t0 = time.perf_counter()
            states = await asyncio.gather(*[rt.tick(workflow=SLOW, run_id=r) for r in ids])
            out["effects16_s"] = time.perf_counter() - t0
            assert all(s.status is RunStatus.COMPLETED for s in states)
        async with AsyncRuntime.from_config({"store": f"lmdb://{base / 'nosync'}?sync=false"}) as rt:
            await _tasks(4, 16, lambda: _hitl_async(rt))
            out["nosync_one_task_runs_s"] = await _tasks(1, max(20, runs // 4), lambda: _hitl_async(rt))
            out["nosync_tasks16_runs_s"] = await _tasks(TASKS, runs, lambda: _hitl_async(rt))
        with Runtime.from_config({"store": f"lmdb://{base / 'blocking'}"}) as sync_rt:
            with Heartbeat() as beat:
                out["blocking16_runs_s"] = await _tasks(TASKS, max(32, runs // 2), lambda: _hitl_blocking(sync_rt))
            out["lag_blocking"] = beat.figures()

    asyncio.run(main())
    out["ratio"] = out["tasks16_runs_s"] / out["one_task_runs_s"]
    return out


def _median(trials: List[Dict[str, Any]], key: str, sub: str = "") -> float:
    return statistics.median(t[key][sub] if sub else t[key] for t in trials)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400, help="runs per 16-task measurement (default 400)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100 runs, 1 trial")
    parser.add_argument("--dir", default=None, help="where the stores are created (a real disk)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--cpus", type=int, help="confine the process (every thread) to this many CPUs")
    args = parser.parse_args(argv)
    if args.cpus and not hasattr(os, "sched_setaffinity"):
        parser.error("--cpus needs os.sched_setaffinity (Linux)")
    cpus = sorted(os.sched_getaffinity(0))[:args.cpus] if args.cpus else None
    if cpus:
        os.sched_setaffinity(0, cpus)  # the worker threads started from here on inherit it
    runs, trials = (100, 1) if args.quick else (args.runs, args.trials)
    results = []
    for _ in range(trials):
        base = Path(tempfile.mkdtemp(prefix="arasync_", dir=args.dir))
        try:
            results.append(trial(base, runs))
        finally:
            shutil.rmtree(base, ignore_errors=True)
    figures = {
        "one_task_runs_s": _median(results, "one_task_runs_s"), "tasks16_runs_s": _median(results, "tasks16_runs_s"),
        "ratio": _median(results, "ratio"),
        "lag_p99_ms": _median(results, "lag_16_tasks", "p99_ms"), "lag_max_ms": _median(results, "lag_16_tasks",
                                                                                         "max_ms"),
        "effects16_s": _median(results, "effects16_s"),
        "blocking16_runs_s": _median(results, "blocking16_runs_s"),
        "blocking_lag_p99_ms": _median(results, "lag_blocking", "p99_ms"),
        "blocking_lag_max_ms": _median(results, "lag_blocking", "max_ms"),
        "nosync_one_task_runs_s": _median(results, "nosync_one_task_runs_s"),
        "nosync_tasks16_runs_s": _median(results, "nosync_tasks16_runs_s"),
    }
    checks = {"A1 16 tasks >= 3x one task": figures["ratio"] >= 3,
              "A2 loop lag p99 <= 20 ms": figures["lag_p99_ms"] <= 20,
              "A2 loop lag max <= 100 ms": figures["lag_max_ms"] <= 100,
              "A3 16 x 0.3 s async effects <= 1.5 s": figures["effects16_s"] <= 1.5}
    if args.json:
        print(json.dumps({"figures": figures, "checks": checks, "trials": results, "cpus": cpus}, indent=2))
    else:
        if cpus:
            print(f"confined to CPU {', '.join(map(str, cpus))} (--cpus {args.cpus})")
        print(f"A1  one task {figures['one_task_runs_s']:.0f} runs/s, 16 tasks {figures['tasks16_runs_s']:.0f} "
              f"runs/s: {figures['ratio']:.1f}x")
        print(f"A2  loop lag with 16 tasks: p99 {figures['lag_p99_ms']:.1f} ms, max {figures['lag_max_ms']:.1f} ms")
        print(f"A3  16 runs x {EFFECT_S} s async effect: {figures['effects16_s']:.2f} s")
        print(f"B   sync Runtime called from 16 tasks (blocking): {figures['blocking16_runs_s']:.0f} runs/s, loop lag "
              f"p99 {figures['blocking_lag_p99_ms']:.1f} ms, max {figures['blocking_lag_max_ms']:.1f} ms")
        print(f"C   without fsync: one task {figures['nosync_one_task_runs_s']:.0f} runs/s, 16 tasks "
              f"{figures['nosync_tasks16_runs_s']:.0f} runs/s")
        for name, ok in checks.items():
            print(f"    {'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
