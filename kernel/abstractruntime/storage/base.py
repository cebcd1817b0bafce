"""The store contract (docs/stores.md): the reference's ``RunStore`` / ``LedgerStore`` ABCs, the step commit
(:class:`StepCommit`) and :class:`StoreBackend`, the one class a store plugin implements; :class:`SplitBackend`
commits stores that share no backend in two writes. Writing a store: docs/writing-a-store.md."""

from __future__ import annotations

import abc
from enum import Enum
from typing import Any, Callable, ClassVar, Dict, FrozenSet, List, Optional, Tuple

from attrs import field, frozen

from .. import _namespace
from ..errors import ConcurrentModificationError, EffectAlreadyStartedError, StoreError
from ..models import RunState, StepRecord, StepStatus
from ..stash import Stash


class RunStore(abc.ABC):
    """Run checkpoints (reference API)."""

    @abc.abstractmethod
    def save(self, run: RunState) -> None: ...

    @abc.abstractmethod
    def load(self, run_id: str) -> Optional[RunState]: ...


class LedgerStore(abc.ABC):
    """The append-only ledger (reference API). ``list`` returns dicts in append order; a store numbering rows with a
    per-run ``seq`` raises :class:`~abstractruntime.errors.LedgerGapError` when they skip one (docs/stores.md)."""

    @abc.abstractmethod
    def append(self, record: StepRecord) -> None: ...

    @abc.abstractmethod
    def list(self, run_id: str) -> List[Dict[str, Any]]: ...


class Capability(str, Enum):
    """Optional abilities a :class:`StoreBackend` declares in ``capabilities`` (the kernel and plugins never probe
    for them). Each names the methods it promises; the conformance suite runs the tests of each declared one."""

    #: ``run_store.load_revision(run_id) -> Optional[int]``: the stored revision without decoding the checkpoint.
    REVISION_PROBE = "revision_probe"
    #: ``ledger_store.find_by_idempotency_key(run_id, key) -> Optional[dict]`` from an index, not a ledger scan
    IDEMPOTENCY_INDEX = "idempotency_index"
    #: ``ledger_store.count(run_id)``, ``list_after(*, run_id, after, limit) -> (rows, cursor)``, ``last_record``
    LEDGER_PAGING = "ledger_paging"
    #: ``run_store.list_runs`` / ``list_due_wait_until`` / ``list_children`` / ``list_run_index`` (reference queries)
    RUN_QUERIES = "run_queries"
    #: ``run_store.list_waiting_for_event(*, wait_key, limit)`` from an index, never a scan of all runs.
    EVENT_INDEX = "event_index"
    #: ``backend.run_locks`` (``acquire(run_id) -> bool``, ``release(run_id)``, ``close()``): who drives a run
    RUN_LOCKS = "run_locks"
    #: ``backend.claim_runnable`` / ``fenced`` / ``heartbeat`` / ``release``: leased runs for many workers (PostgreSQL)
    LEASES = "leases"


@frozen
class CommitView:
    """What a commit's preconditions read inside the store's write transaction: ``last_record(run_id)`` (a dict or
    None), ``latest_status(run_id, key)`` (of the row ``find_by_idempotency_key`` would return, or None) and, if the
    store knows it without decoding the record, ``last_hash(run_id)`` (its ``record_hash``; None: read last_record)."""

    last_record: Callable[[str], Optional[Dict[str, Any]]]
    latest_status: Callable[[str, str], Optional[str]]
    last_hash: Optional[Callable[[str], Optional[str]]] = None


#: ``precondition(view)``: reads a :class:`CommitView`; raises a ConcurrentModificationError subclass to refuse
Precondition = Callable[[CommitView], None]


@frozen
class StepCommit:
    """Everything one step writes, checked and encoded (UTF-8 JSON bytes) by the kernel (fields: docs/stores.md).
    ``run`` None: a ledger-only reservation. A store calls :meth:`check` in its write transaction before writing.
    ``durable`` False (durability ``"none"``): the store may return before the commit reaches the disk."""

    run: Optional[RunState]
    run_json: Optional[bytes]
    records: Tuple[StepRecord, ...] = field(converter=tuple, factory=tuple)
    record_jsons: Tuple[bytes, ...] = field(converter=tuple, factory=tuple)
    expected_revision: Optional[int] = None
    reservation: bool = False
    preconditions: Tuple[Precondition, ...] = field(converter=tuple, factory=tuple)
    durable: bool = True

    @property
    def run_id(self) -> str:
        if self.run is not None:
            return self.run.run_id
        return self.records[0].run_id

    def check(self, view: CommitView) -> None:
        """Refuse the commit if a reservation was taken by another writer or a precondition fails."""
        if self.reservation:
            check_reservations(self, view.latest_status)
        for precondition in self.preconditions:
            precondition(view)


_TAKEN = (StepStatus.STARTED.value, StepStatus.COMPLETED.value)


def check_reservations(commit: StepCommit, latest_status: Callable[[str, str], Optional[str]]) -> None:
    """A ``started`` row whose key is already ``started`` or ``completed`` (stored or earlier in ``commit``) raises
    :class:`~abstractruntime.errors.EffectAlreadyStartedError`; a reservation after a ``failed`` row is a retry."""
    seen: Dict[Tuple[str, str], Optional[str]] = {}
    for record in commit.records:
        key = record.idempotency_key
        if not key:
            continue
        k = (record.run_id, key)
        status = seen[k] if k in seen else latest_status(record.run_id, key)
        if record.status is StepStatus.STARTED and status in _TAKEN:
            raise EffectAlreadyStartedError(run_id=record.run_id, idempotency_key=key, status=status)
        if status != StepStatus.COMPLETED.value:
            seen[k] = record.status.value


class StoreBackend(abc.ABC):
    """What a store plugin's factory returns: commits steps, declares :class:`Capability` values, hands out sibling
    services (None: none of its own). ``run_store.backend`` and ``ledger_store.backend`` must be this object."""

    capabilities: ClassVar[FrozenSet[Capability]] = frozenset()
    run_store: RunStore
    ledger_store: LedgerStore
    #: with :attr:`Capability.RUN_LOCKS`: the store's run locks
    run_locks: Any = None

    @abc.abstractmethod
    def commit_step(self, commit: StepCommit) -> None:
        """Write ``commit`` in one transaction: call ``commit.check(view)`` first, check ``expected_revision``,
        then write the checkpoint and the records. Raise and write nothing if anything fails."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the backend holds (files, connections); idempotent."""

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    @property
    def stash(self) -> Stash:
        """Per-backend state for plugins (e.g. the offloading decorators' shared wrapper), like ``Runtime.stash``."""
        stash = self.__dict__.get("_stash")
        if stash is None:
            stash = self.__dict__.setdefault("_stash", Stash())
        return stash

    def artifact_store(self) -> Any:
        """The artifact store that lives with this store (e.g. files beside it, a table in it), or None."""
        return None

    def snapshot_store(self) -> Any:
        """The snapshot store that lives with this store, or None."""
        return None

    def command_store(self) -> Any:
        """The command inbox that lives with this store, or None."""
        return None


class SplitBackend(StoreBackend):
    """Commits to a run store and a ledger store that share no transaction: records, then the checkpoint, checked
    before but not race-free (docs/architecture.md#mixed-stores-splitbackend)."""

    _RUN_SIDE = frozenset({Capability.REVISION_PROBE, Capability.RUN_QUERIES, Capability.EVENT_INDEX})
    _LEDGER_SIDE = frozenset({Capability.IDEMPOTENCY_INDEX, Capability.LEDGER_PAGING})

    def __init__(self, run_store: RunStore, ledger_store: LedgerStore) -> None:
        self.run_store = run_store
        self.ledger_store = ledger_store
        self.capabilities = ((declared_capabilities(run_store) & self._RUN_SIDE)  # type: ignore[misc]
                             | (declared_capabilities(ledger_store) & self._LEDGER_SIDE))

    def commit_step(self, commit: StepCommit) -> None:
        run = commit.run
        if run is not None and commit.expected_revision is not None and self.supports(Capability.REVISION_PROBE):
            actual = self.run_store.load_revision(run.run_id)  # type: ignore[attr-defined]
            if actual != commit.expected_revision:
                raise ConcurrentModificationError(run_id=run.run_id, expected=commit.expected_revision, actual=actual)
        commit.check(CommitView(last_record=self._last_record, latest_status=self._latest_status))
        for record in commit.records:
            self.ledger_store.append(record)
        if run is not None:
            self.run_store.save(run)

    def _last_record(self, run_id: str) -> Optional[Dict[str, Any]]:
        rows = self.ledger_store.list(run_id)
        return rows[-1] if rows else None

    def _latest_status(self, run_id: str, key: str) -> Optional[str]:
        if self.supports(Capability.IDEMPOTENCY_INDEX):
            return (self.ledger_store.find_by_idempotency_key(run_id, key) or {}).get("status")  # type: ignore
        latest = None
        for row in self.ledger_store.list(run_id):
            if row.get("idempotency_key") == key:
                if row.get("status") == StepStatus.COMPLETED.value:
                    return StepStatus.COMPLETED.value
                latest = row.get("status")
        return latest

    def close(self) -> None:  # the stores belong to the host
        pass


def declared_capabilities(store: Any) -> FrozenSet[Capability]:
    """The capabilities of a store facade's backend, looking through decorators (``inner``)."""
    for _ in range(16):
        backend = getattr(store, "backend", None)
        if isinstance(backend, StoreBackend):
            return frozenset(backend.capabilities)
        store = getattr(store, "inner", None)
        if store is None:
            break
    return frozenset()


def backend_for(run_store: Any, ledger_store: Any) -> StoreBackend:
    """The backend that commits a pair of stores: their shared one, else a :class:`SplitBackend`."""
    backend = getattr(run_store, "backend", None)
    if backend is not None and backend is getattr(ledger_store, "backend", None):
        if not isinstance(backend, StoreBackend):
            raise StoreError(f"{type(backend).__name__} is the backend of {type(run_store).__name__} but is not a "
                             f"StoreBackend: a store's backend must subclass abstractruntime.StoreBackend")
        return backend
    return SplitBackend(run_store, ledger_store)


__all__ = [
    "RunStore", "LedgerStore", "Capability",
    "CommitView", "Precondition", "StepCommit", "StoreBackend", "SplitBackend", "backend_for",
    "check_reservations", "declared_capabilities",
]

# The reference's query protocols live in the compatibility layer; the contract is Capability.RUN_QUERIES / EVENT_INDEX.
__getattr__, __dir__ = _namespace.package_getattr(__name__, __all__)
