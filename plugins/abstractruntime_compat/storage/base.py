"""Reference path ``abstractruntime.storage.base``: the reference's query protocols. The store contract itself
(``RunStore``, ``LedgerStore``, ``StoreBackend``, ``Capability``, ...) is the kernel's
:mod:`abstractruntime.storage.base`, which finds these names here."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Protocol, runtime_checkable

from abstractruntime.models import RunState, RunStatus, WaitReason
from abstractruntime.storage.base import LedgerStore, RunStore


@runtime_checkable
class QueryableRunStore(Protocol):
    def list_runs(
        self,
        *,
        status: Optional[RunStatus] = None,
        wait_reason: Optional[WaitReason] = None,
        workflow_id: Optional[str] = None,
        limit: int = 100,
    ) -> List[RunState]: ...

    def list_due_wait_until(self, *, now_iso: str, limit: int = 100) -> List[RunState]: ...

    def list_children(self, *, parent_run_id: str, status: Optional[RunStatus] = None) -> List[RunState]: ...


@runtime_checkable
class EventWaitIndexStore(Protocol):
    """Our addition: the runs waiting for an event key, from an index (never a scan of all runs)."""

    def list_waiting_for_event(self, *, wait_key: str, limit: int = 10000) -> List[RunState]: ...


@runtime_checkable
class QueryableRunIndexStore(Protocol):
    def list_run_index(
        self,
        *,
        status: Optional[RunStatus] = None,
        workflow_id: Optional[str] = None,
        session_id: Optional[str] = None,
        root_only: bool = False,
        limit: int = 100,
    ) -> List[Dict[str, Any]]: ...


__all__ = ["RunStore", "LedgerStore", "QueryableRunStore", "QueryableRunIndexStore", "EventWaitIndexStore"]
