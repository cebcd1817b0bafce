"""The write path of a runtime (:class:`RunWriter`): every write (the kernel's, ``Runtime.commit``, ``update_run``) is
checked, encoded and committed here, then reported to the observers. Durability ``"barrier"``/``"none"``: a tick's
steps are *staged* and written together at the next barrier; ``"step"``: each is a commit (docs/durability.md)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

import attrs
import orjson

from . import codec
from .errors import ConcurrentModificationError, UnknownRunError
from .ledger_rows import TERMINAL_KEYS
from .logs import get_logger
from .models import RunState, RunStatus, StepRecord, StepStatus, utc_now_iso
from .plugins import Hooks
from .storage.base import Capability, StepCommit, StoreBackend

if TYPE_CHECKING:
    from .runtime import Runtime

log = get_logger("abstractruntime")
#: a batch is written without waiting for a barrier once it holds this many records or is this old (seconds): bounded
#: memory, bounded work lost to a concurrent pause or cancel, bounded staleness for observers
MAX_STAGED_RECORDS, MAX_STAGED_SECONDS = 512, 0.1
#: how often a tick with staged steps asks the store whether the run changed elsewhere (a pause, a cancel)
PROBE_SECONDS = 0.01

Mutate = Callable[[RunState], Optional[List[StepRecord]]]


class _Batch:
    """One run's steps staged since its last barrier: the live run, copies of their records, the stored revision and
    status the batch extends, and the state after the last staged step (``vars_json`` and ``fields``: what a
    reservation checkpoints and a failing node falls back to; the live run may be half-mutated by then)."""

    __slots__ = ("run", "records", "expected", "previous_status", "node_id", "due", "vars_json", "vars_copy",
                 "fields")

    def __init__(self, run: RunState, previous_status: Optional[RunStatus]) -> None:
        self.run, self.expected, self.previous_status = run, run.revision, previous_status
        self.records, self.node_id, self.vars_json, self.vars_copy, self.fields = [], None, b"", None, ()  # type: Any
        self.due = time.monotonic() + MAX_STAGED_SECONDS

    def before(self) -> RunState:
        """A copy of the run as of its last staged step (stored revision)."""
        run = attrs.evolve(self.run, vars=codec.from_json_text(self.vars_json), revision=self.expected)
        run.current_node, run.step, run.status, run.error, run.waiting, run.output = self.fields
        return run


def _unchanged_json(batch: _Batch, run_vars: Any) -> Optional[bytes]:
    """``run_vars``' JSON (orjson's buffer: not to be kept) if they equal the vars the batch checked last (decoded),
    the kernel's own iteration counter mirrored first: most steps change nothing else. None: check them in full. A
    check at C speed: NaN equals nothing, a UUID or Enum member not its string or value, and orjson's strict mode
    refuses the rest (subclasses of str/int/float/dict/list, datetimes, dataclasses)."""
    copy = batch.vars_copy
    if copy is None or type(run_vars) is not dict:
        return None
    limits, copied = run_vars.get("_limits"), copy.get("_limits")
    if type(limits) is dict and type(copied) is dict and type(limits.get("current_iteration")) is int:
        copied["current_iteration"] = limits["current_iteration"]  # what Runtime._step wrote itself
    try:
        return orjson.dumps(run_vars, option=codec.STRICT) if run_vars == copy else None
    except TypeError:
        return None


def _snapshot(record: StepRecord) -> StepRecord:
    """Check a record's free-form parts now and copy them: a later node may mutate what they share with vars."""
    parts = [record.effect, record.result]
    found = codec.plain_json(parts)
    if found is None:  # the walk names the path, or it is plain JSON after all (a tuple, ...)
        codec.check_json(record.effect, "ledger.effect", run_id=record.run_id, node_id=record.node_id)
        codec.check_json(record.result, "ledger.result", run_id=record.run_id, node_id=record.node_id)
    record.effect, record.result = codec.from_json_text(codec.to_json_bytes(parts)) if found is None else found[1]
    return record


class RunWriter:
    """Commits for one runtime. ``publish(records)`` delivers committed records to ledger subscribers."""

    def __init__(self, *, runtime: "Runtime", backend: StoreBackend, run_store: Any, ledger_store: Any,
                 hooks: Hooks, publish: Callable[[Sequence[StepRecord]], None], durability: str = "barrier") -> None:
        self._runtime = runtime
        self._backend = backend
        self._run_store = run_store
        self._ledger_store = ledger_store
        self._hooks = hooks
        self._publish = publish
        self._indexed = backend.supports(Capability.IDEMPOTENCY_INDEX)
        self._probe = backend.supports(Capability.REVISION_PROBE)
        self.staging, self._durable = durability != "step", durability != "none"  # staging: steps wait for a barrier
        self._batches: Dict[str, _Batch] = {}

    def load(self, run_id: str) -> RunState:
        run = self._run_store.load(run_id)
        if run is None:
            raise UnknownRunError(run_id)
        return run

    def commit(self, run: Optional[RunState], records: Sequence[StepRecord], *, node_id: Optional[str],
               expected_revision: Optional[int], previous_status: Optional[RunStatus] = None,
               run_id: Optional[str] = None, reservation: bool = False) -> None:
        """Check, encode and write one step (with the run's staged steps, if any: a ledger-only reservation carries
        the staged checkpoint). Raises before writing anything if a value is not plain JSON."""
        live: Optional[RunState] = None
        run_json = vars_json = None  # vars_json: the checked JSON of the vars, written as it is (not encoded again)
        checked = 0  # the batch's records: checked when staged
        batch = self._batches.pop(run.run_id if run is not None else run_id or records[0].run_id, None)
        if batch is not None and (run is None or run is batch.run):
            records, expected_revision, previous_status, checked = batch.records + list(records), batch.expected, \
                batch.previous_status, len(batch.records)
            if run is None and batch.vars_json:  # a reservation carries the state before the step in progress
                live, run, node_id, vars_json = batch.run, batch.before(), batch.node_id, batch.vars_json
            elif run is not None:  # a barrier: vars as the last staged step left them need no decoding again
                vars_json = _unchanged_json(batch, run.vars)
        elif batch is not None:  # another object of the run (a plugin's): the batch will meet its revision check
            self._batches[batch.run.run_id] = batch
        old_revision = run.revision if run is not None else None
        preconditions: List[Any] = []
        try:
            if run is not None:
                run.revision = (expected_revision if expected_revision is not None else run.revision) + 1
                run.updated_at = utc_now_iso()
                run_json = codec.encode_run(run, node_id=node_id, vars_json=vars_json)
            if records:
                by_run: Dict[str, List[StepRecord]] = {}
                for r in records:
                    by_run.setdefault(r.run_id, []).append(r)
                for rid_, recs in by_run.items():
                    preconditions += self._hooks.prepare_ledger_records(runtime=self._runtime, run_id=rid_,
                                                                        records=recs)
            record_jsons = [codec.encode_record(r, i < checked) for i, r in enumerate(records)]
        except BaseException:
            if run is not None:
                run.revision = old_revision  # nothing was written: the object keeps its last committed revision
            raise
        rid = run.run_id if run is not None else (run_id or records[0].run_id)
        self._hooks.fault_point(point="commit:before", run_id=rid)
        self._backend.commit_step(StepCommit(
            run=run, run_json=run_json, records=records, record_jsons=record_jsons,
            expected_revision=expected_revision, reservation=reservation, preconditions=preconditions,
            durable=self._durable,
        ))
        self._hooks.fault_point(point="commit:after", run_id=rid)
        if live is not None:  # the live run now extends the reservation's checkpoint
            live.revision = run.revision
        if records:
            self._hooks.ledger_appended(run_id=rid, records=records)
            self._publish(records)
        if run is not None and previous_status is not None and run.status is not previous_status:
            self._hooks.run_status_changed(run=run, previous_status=previous_status, runtime=self._runtime)
            log.debug("run_status", run_id=rid, node=node_id, step=run.step, status=run.status._value_)

    def stage(self, run: RunState, records: Sequence[StepRecord], *, node_id: Optional[str],
              expected_revision: Optional[int], previous_status: Optional[RunStatus] = None) -> None:
        """A step between barriers: its records checked and copied now, the step written at the next barrier
        (``settle``, a reservation) or once the batch is full or old. With durability ``"step"``: committed now."""
        if not self.staging:
            return self.commit(run, records, node_id=node_id, expected_revision=expected_revision,
                               previous_status=previous_status)
        batch = self._batches.get(run.run_id)
        if batch is None or batch.run is not run:
            batch = self._batches[run.run_id] = _Batch(run, previous_status)
        try:  # every step: a JsonInvariantError names the node that did it
            data = _unchanged_json(batch, run.vars)  # (orjson's buffer: replaced at the next step, never stored)
            found = (data, batch.vars_copy) if data is not None else codec.plain_json(run.vars)
            if found is None:
                codec.check_json(run.vars, "vars", run_id=run.run_id, node_id=node_id)
            batch.vars_json, batch.vars_copy = (codec.to_json_bytes(run.vars), None) if found is None else found
            if run.output is not None or run.waiting is not None:
                codec.check_run(run, node_id=node_id, vars_checked=True)
            if records:  # (a terminal-status row is the kernel's own plain JSON, shared with nothing: not copied)
                batch.records.extend([r if r.idempotency_key in TERMINAL_KEYS else _snapshot(r) for r in records])
        except BaseException:
            self._batches.pop(run.run_id, None)
            raise
        batch.fields = (run.current_node, run.step, run.status, run.error, run.waiting, run.output)
        batch.node_id = node_id
        if len(batch.records) >= MAX_STAGED_RECORDS or time.monotonic() >= batch.due:
            self.commit(run, (), node_id=node_id, expected_revision=None)

    def settle(self, run: RunState, *, strict: bool = False) -> RunState:
        """The barrier that ends an API call: write ``run``'s staged steps and return it. Staged steps of another
        object (the tick returned the stored state: the run changed elsewhere) are dropped; a conflict returns the
        stored state (``strict``: raises, for a resume whose own commit conflicted)."""
        batch = self._batches.get(run.run_id)
        if batch is None:
            return run
        if batch.run is not run:
            self._batches.pop(run.run_id, None)
            return run
        try:
            self.commit(run, (), node_id=batch.node_id, expected_revision=None)
        except ConcurrentModificationError:
            if strict:
                raise
            return self.load(run.run_id)
        return run

    def discard(self, run_id: str) -> None:
        """Drop what is staged for ``run_id`` (never observed: the call that staged it raised)."""
        self._batches.pop(run_id, None)

    def last_good(self, run_id: str) -> RunState:
        """The run as of its last staged (else stored) step, for failing a node that raised: the live object may
        be half-mutated. The copy takes the batch's place, so the failure is committed with the staged steps."""
        batch = self._batches.get(run_id)
        if batch is None or not batch.vars_json:
            return self.load(run_id)
        batch.run = batch.before()
        return batch.run

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
        """Did anyone (cancel_run, pause_run, another worker) commit to this run since we did? While steps are
        staged a tick asks at most every :data:`PROBE_SECONDS` (a barrier's own revision check refuses a stale batch
        anyway: a reservation carries the checkpoint); else before every step."""
        if self._probe:
            return self._run_store.load_revision(run.run_id) != run.revision
        persisted = self.load(run.run_id)
        return persisted.revision != run.revision or persisted.is_paused or persisted.status.is_terminal


__all__ = ["RunWriter"]
