"""The write path of a runtime (:class:`RunWriter`): check, encode and commit one step through the store backend,
then tell the observers. Every write of the kernel and of plugins that use ``Runtime.commit`` / ``update_run``
goes through here, so the JSON invariant, the ledger-record hooks and the commit preconditions always apply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

from . import codec
from .errors import ConcurrentModificationError, UnknownRunError
from .logs import get_logger
from .models import RunState, RunStatus, StepRecord, StepStatus, utc_now_iso
from .plugins import Hooks
from .storage.base import Capability, StepCommit, StoreBackend

if TYPE_CHECKING:
    from .runtime import Runtime

log = get_logger("abstractruntime")

Mutate = Callable[[RunState], Optional[List[StepRecord]]]


class RunWriter:
    """Commits for one runtime. ``publish(records)`` delivers committed records to ledger subscribers."""

    def __init__(self, *, runtime: "Runtime", backend: StoreBackend, run_store: Any, ledger_store: Any,
                 hooks: Hooks, publish: Callable[[Sequence[StepRecord]], None]) -> None:
        self._runtime = runtime
        self._backend = backend
        self._run_store = run_store
        self._ledger_store = ledger_store
        self._hooks = hooks
        self._publish = publish
        self._indexed = backend.supports(Capability.IDEMPOTENCY_INDEX)

    def load(self, run_id: str) -> RunState:
        run = self._run_store.load(run_id)
        if run is None:
            raise UnknownRunError(run_id)
        return run

    def commit(
        self,
        run: Optional[RunState],
        records: Sequence[StepRecord],
        *,
        node_id: Optional[str],
        expected_revision: Optional[int],
        previous_status: Optional[RunStatus] = None,
        run_id: Optional[str] = None,
        reservation: bool = False,
    ) -> None:
        """Check, encode and write one step. Raises before writing anything if a value is not plain JSON."""
        run_json = None
        old_revision = run.revision if run is not None else None
        preconditions: List[Any] = []
        try:
            if run is not None:
                run.updated_at = utc_now_iso()
                run.revision = (expected_revision if expected_revision is not None else run.revision) + 1
                run_json = codec.encode_run(run, node_id=node_id)
            if records:
                by_run: Dict[str, List[StepRecord]] = {}
                for r in records:
                    by_run.setdefault(r.run_id, []).append(r)
                for rid_, recs in by_run.items():
                    preconditions += self._hooks.prepare_ledger_records(runtime=self._runtime, run_id=rid_,
                                                                        records=recs)
            record_jsons = [codec.encode_record(r) for r in records]
        except BaseException:
            if run is not None:
                run.revision = old_revision  # nothing was written: the object keeps its last committed revision
            raise
        rid = run.run_id if run is not None else (run_id or records[0].run_id)
        self._hooks.fault_point(point="commit:before", run_id=rid)
        self._backend.commit_step(StepCommit(
            run=run, run_json=run_json, records=records, record_jsons=record_jsons,
            expected_revision=expected_revision, reservation=reservation, preconditions=preconditions,
        ))
        self._hooks.fault_point(point="commit:after", run_id=rid)
        if records:
            self._hooks.ledger_appended(run_id=rid, records=records)
            self._publish(records)
        if run is not None and previous_status is not None and run.status is not previous_status:
            self._hooks.run_status_changed(run=run, previous_status=previous_status, runtime=self._runtime)
            log.debug("run_status", run_id=rid, node=node_id, step=run.step, status=run.status.value)

    def commit_for_plugin(self, run: Optional[RunState], records: Sequence[StepRecord], *,
                          expected_revision: Optional[int], run_id: Optional[str]) -> None:
        """``Runtime.commit``: the previous status (for the status observers) is read from the store."""
        previous = None
        if run is not None and expected_revision is not None:
            stored = self._run_store.load(run.run_id)
            previous = stored.status if stored is not None else None
        self.commit(run, list(records), node_id=run.current_node if run is not None else None,
                    expected_revision=expected_revision, previous_status=previous, run_id=run_id)

    def update(self, run_id: str, mutate: Mutate) -> RunState:
        """Load, mutate, commit with a revision check; retried if another writer committed in between."""
        for _ in range(50):
            run = self.load(run_id)
            before = run.status
            expected = run.revision
            records = mutate(run)
            if records is None:  # no change
                return run
            try:
                self.commit(run, records, node_id=run.current_node, expected_revision=expected,
                            previous_status=before)
                return run
            except ConcurrentModificationError:
                continue
        raise ConcurrentModificationError(run_id=run_id, expected=-1, actual=None)

    def find_prior(self, run_id: str, key: str) -> Optional[Dict[str, Any]]:
        """The ledger row an earlier attempt with this idempotency key left: a completed one first, else the
        latest (from the store's index when it declares one, else by reading the run's ledger)."""
        if self._indexed:
            return self._ledger_store.find_by_idempotency_key(run_id, key)
        latest = None
        for row in self._ledger_store.list(run_id):
            if row.get("idempotency_key") == key:
                if row.get("status") == StepStatus.COMPLETED.value:
                    return row
                latest = row
        return latest

    def resumed(self, run_id: str, wait_key: str) -> bool:
        """Was a wait with this key of the run resumed already (a ``resume`` row in its ledger)?"""
        return any((row.get("effect") or {}).get("type") == "resume"
                   and ((row["effect"].get("payload") or {}).get("wait_key") == wait_key)
                   for row in reversed(self._ledger_store.list(run_id)))

    def changed_elsewhere(self, run: RunState) -> bool:
        """Did anyone (cancel_run, pause_run, another worker) commit to this run since we did?"""
        if self._backend.supports(Capability.REVISION_PROBE):
            return self._run_store.load_revision(run.run_id) != run.revision
        persisted = self.load(run.run_id)
        return persisted.revision != run.revision or persisted.is_paused or persisted.status.is_terminal


__all__ = ["RunWriter"]
