"""``Runtime`` is thread-safe (docs/asyncio.md, "Thread safety"): N threads on one Runtime, on every embedded
store -- every run completes, every ledger verifies, no commit is lost, no step runs twice."""

from __future__ import annotations

import threading

import pytest
from async_flows import ASK, counter_flow

from abstractruntime import Runtime, RunStatus

THREADS = 8
STORES = ["memory", "lmdb", "sqlite", "jsonfiles"]


def _url(kind, tmp_path):
    return {"memory": "memory://", "lmdb": f"lmdb://{tmp_path / 'lmdb'}",
            "sqlite": f"sqlite://{tmp_path / 'runs.db'}", "jsonfiles": f"jsonfiles://{tmp_path / 'json'}"}[kind]


def _in_threads(n, work):
    errors = []

    def guarded(i):
        try:
            work(i)
        except BaseException as exc:  # reported below with the thread that raised it
            errors.append(f"thread {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []


@pytest.mark.parametrize("kind", STORES)
def test_threads_driving_their_own_runs(kind, tmp_path):
    flow = counter_flow(5, workflow_id="five")
    runs = {i: [] for i in range(THREADS)}
    with Runtime.from_config({"store": _url(kind, tmp_path)}) as rt:
        def work(i):
            for j in range(6):
                run_id = rt.start(workflow=ASK, vars={"thread": i, "j": j})
                state = rt.tick(workflow=ASK, run_id=run_id)
                state = rt.resume(workflow=ASK, run_id=run_id, wait_key=state.waiting.wait_key,
                                  payload={"text": f"{i}.{j}"})
                assert state.output == {"greeting": f"Hello, {i}.{j}!"}
                other = rt.start(workflow=flow)
                assert rt.tick(workflow=flow, run_id=other).output["n"] == 5
                runs[i] += [run_id, other]

        _in_threads(THREADS, work)
        all_runs = [r for rs in runs.values() for r in rs]
        assert len(set(all_runs)) == THREADS * 12
        for run_id in all_runs:
            assert rt.get_state(run_id).status is RunStatus.COMPLETED
            assert rt.verify_ledger(run_id)["ok"]


@pytest.mark.parametrize("kind", STORES)
def test_threads_contending_for_one_run_lose_no_commit_and_repeat_no_step(kind, tmp_path):
    steps = 30
    flow = counter_flow(steps, workflow_id="long")
    with Runtime.from_config({"store": _url(kind, tmp_path), "durability": "step"}) as rt:
        run_id = rt.start(workflow=flow)

        def tick_until_done(_i):
            while rt.tick(workflow=flow, run_id=run_id, max_steps=1).status is RunStatus.RUNNING:
                pass

        _in_threads(THREADS, tick_until_done)
        state = rt.get_state(run_id)
        assert state.status is RunStatus.COMPLETED and state.output["n"] == steps  # each step exactly once
        assert rt.verify_ledger(run_id)["ok"]

        target = rt.start(workflow=ASK, vars={"count": 0})

        def bump(_i):
            for _ in range(10):
                def add(run):
                    run.vars["count"] += 1
                    return []
                rt.update_run(target, add)

        _in_threads(4, bump)
        assert rt.get_state(target).vars["count"] == 40  # concurrent read-modify-write commits: none lost
