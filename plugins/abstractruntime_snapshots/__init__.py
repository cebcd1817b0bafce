"""Builtin plugin ``snapshots``: named copies of a run's state, restore and fork (reference §2.2, §10, §17 #26).

Reference API: :class:`Snapshot`, :class:`SnapshotStore`, :class:`InMemorySnapshotStore`,
:class:`JsonSnapshotStore` (also importable from ``abstractruntime.storage.snapshots``).

Runtime methods added by this plugin:

* ``runtime.list_snapshots(run_id=None, limit=50) -> list[Snapshot]`` (newest first)
* ``runtime.create_snapshot(run_id, *, name, description=None, tags=None, snapshot_store=None) -> Snapshot``
* ``runtime.restore_snapshot(snapshot_id, *, snapshot_store=None) -> RunState`` -- the run returns to the
  snapshot's status, node, vars, wait, output and error; ``revision`` and ``step`` keep counting up, and the
  ledger gets a ``snapshot_restore`` row (one commit).
* ``runtime.fork_run(snapshot_id, *, snapshot_store=None) -> str`` -- a new root run with the snapshot's state
  (``vars._runtime.forked_from = {run_id, snapshot_id}``) and a ``fork`` ledger row.

Without ``snapshot_store=``, :func:`snapshot_store_for` chooses: ``[abstractruntime.plugin_options.snapshots]
dir = "..."`` (a :class:`JsonSnapshotStore`), else the store backend's own (``backend.snapshot_store()``:
``<store directory>/snapshots`` for LMDB, SQLite and JSON files, a table of the PostgreSQL store), else an
:class:`InMemorySnapshotStore` kept for the life of the runtime (the memory store).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, List, Optional

from attrs import frozen

from abstractruntime import Capability, StashKey, hookimpl
from abstractruntime.descriptors import RuntimeMethodDescriptor
from abstractruntime.errors import AbstractRuntimeError, ValidationError
from abstractruntime.models import RunState, StepRecord, StepStatus, utc_now_iso
from abstractruntime_pluginkit import plugin_options

from .store import InMemorySnapshotStore, JsonSnapshotStore, Snapshot, SnapshotStore, validate_snapshot_id

PLUGIN_NAME = "snapshots"

_STORE = StashKey[SnapshotStore]()


@frozen
class SnapshotsOptions:
    """``[abstractruntime.plugin_options.snapshots]``: ``dir``, a directory for a :class:`JsonSnapshotStore`."""

    dir: Optional[str] = None


class SnapshotNotFoundError(AbstractRuntimeError, KeyError):
    """No snapshot with this id in the snapshot store used."""

    def __init__(self, snapshot_id: str, store: Any) -> None:
        super().__init__(f"Unknown snapshot_id: {snapshot_id} (in {store!r}); list the store's snapshots with "
                         f"store.list(run_id=...)")
        self.snapshot_id = snapshot_id


def snapshot_store_for(runtime: Any) -> SnapshotStore:
    """The snapshot store a runtime uses when none is passed (see the module docstring); one per runtime."""

    def choose() -> SnapshotStore:
        configured = plugin_options(runtime, PLUGIN_NAME, SnapshotsOptions).dir
        if configured:
            return JsonSnapshotStore(Path(configured).expanduser())
        own = runtime.backend.snapshot_store()
        return own if own is not None else InMemorySnapshotStore()

    return runtime.stash.setdefault_factory(_STORE, choose)


def _last_step_id(runtime: Any, run_id: str) -> Optional[str]:
    ledger = runtime.ledger_store
    if runtime.backend.supports(Capability.LEDGER_PAGING):
        n = int(ledger.count(run_id))
        rows = ledger.list_after(run_id=run_id, after=max(0, n - 1), limit=1)[0] if n > 0 else []
    else:
        rows = ledger.list(run_id)[-1:]
    return rows[-1].get("step_id") if rows else None


def _load_snapshot(runtime: Any, snapshot_id: str, snapshot_store: Optional[SnapshotStore]) -> tuple:
    store = snapshot_store if snapshot_store is not None else snapshot_store_for(runtime)
    snap = store.load(snapshot_id)
    if snap is None:
        raise SnapshotNotFoundError(snapshot_id, store)
    return snap, store


def create_snapshot(
    runtime: Any,
    run_id: str,
    *,
    name: str,
    description: Optional[str] = None,
    tags: Optional[List[str]] = None,
    snapshot_store: Optional[SnapshotStore] = None,
) -> Snapshot:
    """Save a snapshot of the run's current checkpoint (``step_id`` = its last ledger row's) and return it."""
    run = runtime.get_state(run_id)
    store = snapshot_store if snapshot_store is not None else snapshot_store_for(runtime)
    snap = Snapshot.from_run(run=run, name=name, description=description, tags=tags,
                             step_id=_last_step_id(runtime, run_id))
    store.save(snap)
    return snap


def _row(run: RunState, effect_type: str, payload: dict, result: dict, key: str) -> StepRecord:
    now = utc_now_iso()
    return StepRecord(
        run_id=run.run_id, step_id=str(uuid.uuid4()), node_id=run.current_node or "runtime",
        status=StepStatus.COMPLETED, effect={"type": effect_type, "payload": payload, "result_key": None},
        result=result, started_at=now, ended_at=now, actor_id=run.actor_id, session_id=run.session_id,
        attempt=1, idempotency_key=key,
    )


def restore_snapshot(runtime: Any, snapshot_id: str, *, snapshot_store: Optional[SnapshotStore] = None) -> RunState:
    """Put the snapshot's run back into the snapshot's state; returns the new checkpoint.

    Restored: ``status``, ``current_node``, ``vars``, ``waiting``, ``output``, ``error``. Kept: identity fields
    and ``created_at``. ``revision`` and ``step`` continue upward (so idempotency keys of steps executed after
    the restore never match those recorded before it). Committed with a revision check, together with one
    COMPLETED ledger row whose effect is ``{"type": "snapshot_restore", "payload": {snapshot_id, name}}``.
    """
    snap, _store = _load_snapshot(runtime, snapshot_id, snapshot_store)

    def mutate(run: RunState) -> List[StepRecord]:
        saved = snap.to_run_state()  # a fresh copy per attempt (_update retries after a concurrent commit)
        if saved.workflow_id != run.workflow_id:
            raise ValidationError(f"Snapshot {snapshot_id} is of workflow {saved.workflow_id!r} but run {run.run_id} "
                             f"now runs {run.workflow_id!r}; use fork_run to start a new run from it")
        run.status = saved.status
        run.current_node = saved.current_node
        run.vars = saved.vars
        run.waiting = saved.waiting
        run.output = saved.output
        run.error = saved.error
        run.step += 1
        return [_row(run, "snapshot_restore", {"snapshot_id": snap.snapshot_id, "name": snap.name},
                     {"restored": True, "snapshot_id": snap.snapshot_id, "status": run.status.value,
                      "current_node": run.current_node},
                     f"system:snapshot_restore:{snap.snapshot_id}:{run.step}")]

    # Runtime._update: load, mutate, commit with a revision check, retry on a concurrent commit.
    return runtime.update_run(snap.run_id, mutate)


def fork_run(runtime: Any, snapshot_id: str, *, snapshot_store: Optional[SnapshotStore] = None) -> str:
    """Start a new run (new id, no parent) from the snapshot's state and return its id.

    ``vars._runtime.forked_from = {"run_id", "snapshot_id"}``; the new run's ledger starts with one ``fork`` row.
    The new run is not ticked: call ``tick`` (or resume it, if the snapshot was waiting) as for any run.
    """
    snap, _store = _load_snapshot(runtime, snapshot_id, snapshot_store)
    run = snap.to_run_state()
    source_run_id = run.run_id
    now = utc_now_iso()
    run.run_id = str(uuid.uuid4())
    run.parent_run_id = None
    run.created_at = now
    run.updated_at = now
    run.revision = 0
    run.step += 1
    runtime_ns = run.vars.get("_runtime")
    if not isinstance(runtime_ns, dict):
        runtime_ns = {}
        run.vars["_runtime"] = runtime_ns
    runtime_ns["forked_from"] = {"run_id": source_run_id, "snapshot_id": snap.snapshot_id}
    record = _row(run, "fork", {"snapshot_id": snap.snapshot_id, "source_run_id": source_run_id,
                                "name": snap.name},
                  {"forked": True, "source_run_id": source_run_id, "snapshot_id": snap.snapshot_id},
                  f"system:fork:{snap.snapshot_id}")
    runtime.commit(run, [record])
    return run.run_id


def list_snapshots(runtime: Any, run_id: Optional[str] = None, limit: int = 50) -> List[Snapshot]:
    """The snapshots of ``run_id`` (all runs if None), newest first, at most ``limit``."""
    return list(snapshot_store_for(runtime).list(run_id=run_id, limit=limit))


@hookimpl
def abstractruntime_register_runtime_methods() -> List[RuntimeMethodDescriptor]:
    return [
        RuntimeMethodDescriptor("list_snapshots", list_snapshots, "The snapshots of a run (or all), newest first"),
        RuntimeMethodDescriptor("create_snapshot", create_snapshot, "Save a named snapshot of a run's state"),
        RuntimeMethodDescriptor("restore_snapshot", restore_snapshot, "Put a run back into a snapshot's state"),
        RuntimeMethodDescriptor("fork_run", fork_run, "Start a new run from a snapshot"),
    ]


__all__ = [
    "Snapshot",
    "SnapshotStore",
    "InMemorySnapshotStore",
    "JsonSnapshotStore",
    "SnapshotNotFoundError",
    "validate_snapshot_id",
    "snapshot_store_for",
    "create_snapshot",
    "restore_snapshot",
    "fork_run",
]


# --- command line: abstractruntime snapshots list/create/restore/fork ---------------------------------------------

def _cli_out(args: Any, data: Any, columns: List[str]) -> None:
    from abstractruntime_cli.output import show

    show(data, args.json, columns)


def _snapshot_row(snap: Snapshot) -> dict:
    return {"snapshot_id": snap.snapshot_id, "run_id": snap.run_id, "name": snap.name, "tags": ",".join(snap.tags),
            "created_at": snap.created_at}


def _cli_list_args(parser: Any) -> None:
    parser.add_argument("--run", dest="run_id")
    parser.add_argument("--tag")
    parser.add_argument("--limit", type=int, default=100)


def _cli_list(args: Any, runtime: Any) -> int:
    snaps = snapshot_store_for(runtime).list(run_id=args.run_id, tag=args.tag, limit=args.limit)
    _cli_out(args, [_snapshot_row(s) for s in snaps], ["snapshot_id", "run_id", "name", "tags", "created_at"])
    return 0


def _cli_create_args(parser: Any) -> None:
    parser.add_argument("run_id")
    parser.add_argument("--name", required=True)
    parser.add_argument("--description")
    parser.add_argument("--tag", action="append", dest="tags")


def _cli_create(args: Any, runtime: Any) -> int:
    snap = create_snapshot(runtime, args.run_id, name=args.name, description=args.description, tags=args.tags)
    _cli_out(args, _snapshot_row(snap), ["snapshot_id", "run_id", "name"])
    return 0


def _cli_snapshot_id(parser: Any) -> None:
    parser.add_argument("snapshot_id")


def _cli_restore(args: Any, runtime: Any) -> int:
    state = restore_snapshot(runtime, args.snapshot_id)
    _cli_out(args, {"run_id": state.run_id, "status": state.status.value, "current_node": state.current_node},
             ["run_id", "status", "current_node"])
    return 0


def _cli_fork(args: Any, runtime: Any) -> int:
    new_id = fork_run(runtime, args.snapshot_id)
    _cli_out(args, {"run_id": new_id, "forked_from": args.snapshot_id}, ["run_id", "forked_from"])
    return 0


@hookimpl
def abstractruntime_register_cli_commands() -> List[Any]:
    from abstractruntime.descriptors import CliCommandDescriptor

    return [
        CliCommandDescriptor("snapshots list", "list snapshots", _cli_list_args, _cli_list),
        CliCommandDescriptor("snapshots create", "snapshot a run's state", _cli_create_args, _cli_create),
        CliCommandDescriptor("snapshots restore", "put a run back into a snapshot's state (ledgered)",
                             _cli_snapshot_id, _cli_restore),
        CliCommandDescriptor("snapshots fork", "start a new run from a snapshot", _cli_snapshot_id, _cli_fork),
    ]
