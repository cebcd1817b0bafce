from pathlib import Path

from abstractruntime.testing import StoreConformance
from abstractruntime_inmemory.store import InMemoryLedgerStore, InMemoryRunStore, MemoryBackend


class TestMemoryStoreConformance(StoreConformance):
    backend_class = MemoryBackend
    persistent = False

    def open_backend(self, path: Path) -> MemoryBackend:
        return MemoryBackend()


def test_reference_style_stores_work_on_their_own():
    # InMemoryRunStore() / InMemoryLedgerStore() constructed separately, as reference hosts do.
    runs, ledger = InMemoryRunStore(), InMemoryLedgerStore()
    assert runs.backend is not ledger.backend
    assert runs.load("x") is None and ledger.list("x") == []


def test_a_run_costs_the_memory_of_what_it_stores():
    # A 20-step run with a ledgered effect per step keeps its checkpoint and 40 ledger rows (~33 KB of JSON); with
    # orjson's growth buffers kept as they came it held ~340 KB.
    import gc
    import tracemalloc

    from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec

    def node(i):
        def fn(run, ctx):
            if i == 19:
                return StepPlan(node_id=f"n{i}", complete_output={"done": True})
            return StepPlan(node_id=f"n{i}", effect=Effect(type=EffectType.WAIT_UNTIL,
                                                             payload={"until": "2000-01-01T00:00:00+00:00"}),
                            next_node=f"n{i + 1}")
        return fn

    wf = WorkflowSpec(workflow_id="mem20", entry_node="n0", nodes={f"n{i}": node(i) for i in range(20)})
    rt = Runtime.from_config({"store": "memory://"})
    backend = rt.run_store.backend

    def one() -> str:
        run_id = rt.start(workflow=wf)
        assert rt.tick(workflow=wf, run_id=run_id, max_steps=30).status is RunStatus.COMPLETED
        return run_id

    one()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run_ids = [one() for _ in range(20)]
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    stored = sum(len(backend._runs[r]) + sum(len(row) for row in backend._ledger[r]) for r in run_ids)
    assert grown < 2 * stored, f"{grown / len(run_ids):.0f} bytes kept per run for {stored / len(run_ids):.0f} stored"
