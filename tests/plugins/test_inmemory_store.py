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
