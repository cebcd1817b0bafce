"""Offloading: keep checkpoints and ledger rows small by moving large values into an artifact store.

Reference API (``abstractruntime.storage.offloading``): :func:`offload_large_values`, the store decorators
:class:`OffloadingRunStore` / :class:`OffloadingLedgerStore` and ``DEFAULT_MAX_INLINE_BYTES``.

Unlike the reference's decorators, a pair of decorators wrapping the run and ledger stores of one backend (same
artifact store, same threshold) still commits each step in **one** transaction: both expose the same ``backend``,
whose ``commit_step`` offloads and then delegates to the inner backend's.
"""

from __future__ import annotations

import json
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

import attrs
import orjson

from abstractruntime import StashKey, codec
from abstractruntime.errors import InvalidStateError, ValidationError
from abstractruntime.models import RunState, StepRecord
from abstractruntime.storage.base import LedgerStore, RunStore, StepCommit, StoreBackend

from .store import ArtifactStore, artifact_ref, is_artifact_ref

# The reference's default threshold (256 KiB) and ``ABSTRACTRUNTIME_MAX_INLINE_BYTES``, read when no threshold is
# given, are the package's (read when a runtime is built, without importing this module).
from . import DEFAULT_MAX_INLINE_BYTES, ENV_MAX_INLINE_BYTES, default_max_inline_bytes  # noqa: E402,F401
from . import fits_inline  # noqa: E402  (the commit hook's check, defined beside it)


def _compact_json(value: Any) -> Optional[bytes]:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        return None


def offload_large_values(
    value: Any,
    *,
    artifact_store: ArtifactStore,
    run_id: str,
    max_inline_bytes: int,
    base_tags: Optional[Dict[str, str]] = None,
    root_path: str = "",
    allow_offload: Optional[Callable[[str, Any], bool]] = None,
    allow_root_replace: bool = False,
) -> Any:
    """Return ``value`` with large parts replaced by ``{"$artifact": id}`` references (reference semantics).

    * ``max_inline_bytes <= 0``: ``value`` is returned unchanged.
    * a string whose UTF-8 size exceeds the threshold becomes a ``text/plain`` artifact (tag ``kind: text``);
    * a dict or list whose compact JSON is still above the threshold after its children were offloaded becomes
      an ``application/json`` artifact (``kind: json``);
    * bytes are always offloaded (``application/octet-stream``, ``kind: bytes``): they have no JSON form;
    * existing references are left as they are; ``allow_offload(path, value)`` can veto a replacement (a veto
      that raises counts as a veto); the root itself is replaced only with ``allow_root_replace``;
    * a cycle raises ``ValueError``.

    Artifacts are stored with ``run_id`` and tags ``base_tags + {path, kind}``. Containers that did not change
    are returned as the same objects; changed ones are new containers (the input is never mutated).
    """
    if max_inline_bytes <= 0:
        return value
    tags0 = {str(k): str(v) for k, v in (base_tags or {}).items()}
    on_path: set = set()

    def may(path: str, v: Any, root: bool) -> bool:
        if root and not allow_root_replace:
            return False
        if allow_offload is None:
            return True
        try:
            return bool(allow_offload(path, v))
        except Exception:
            return False

    def put(content: bytes, content_type: str, path: str, kind: str) -> Dict[str, str]:
        tags = dict(tags0)
        tags["path"] = path
        tags["kind"] = kind
        meta = artifact_store.store(content, content_type=content_type, run_id=run_id, tags=tags)
        return artifact_ref(meta.artifact_id)

    def walk(cur: Any, path: str, root: bool) -> Tuple[Any, bool]:
        if cur is None or is_artifact_ref(cur):
            return cur, False
        if isinstance(cur, (bytes, bytearray, memoryview)):
            return put(bytes(cur), "application/octet-stream", path, "bytes"), True
        if isinstance(cur, str):
            data = cur.encode("utf-8")
            if len(data) > max_inline_bytes and may(path, cur, root):
                return put(data, "text/plain", path, "text"), True
            return cur, False
        is_dict = isinstance(cur, dict)
        if not is_dict and not isinstance(cur, (list, tuple)):
            return cur, False
        if id(cur) in on_path:
            raise ValidationError(f"Cycle detected while offloading at {path or '<root>'}")
        on_path.add(id(cur))
        try:
            changed = False
            if is_dict:
                out: Any = {}
                for k, v in cur.items():
                    key = str(k)
                    new, ch = walk(v, f"{path}.{key}" if path else key, False)
                    changed = changed or ch or key != k
                    out[key] = new
            else:
                out = []
                for i, v in enumerate(cur):
                    new, ch = walk(v, f"{path}[{i}]" if path else f"[{i}]", False)
                    changed = changed or ch
                    out.append(new)
            if may(path, out, root):
                payload = _compact_json(out)
                if payload is not None and len(payload) > max_inline_bytes:
                    return put(payload, "application/json", path, "json"), True
            return (out, True) if changed else (cur, False)
        finally:
            on_path.discard(id(cur))

    result, _ = walk(value, str(root_path or "").strip(), True)
    return result


# --- what the decorators (and the plugin's ledger hook) offload ---------------------------------------------------
def _private_vars_path(path: str, _value: Any) -> bool:
    # Inside a ``_``-prefixed namespace, strictly below ``vars._x``: the namespaces themselves stay dicts.
    return path.startswith("vars._") and path.count(".") >= 2


def offload_run_state(run: RunState, *, artifact_store: ArtifactStore, max_inline_bytes: int) -> RunState:
    """A copy of a **terminal** run with large values of private namespaces and of ``output`` offloaded.

    Non-terminal runs are returned as they are: a running workflow may still need the full values after a
    restart. Returns ``run`` itself when nothing changed. Failures to offload keep the value inline.
    """
    if max_inline_bytes <= 0 or not run.run_id or not run.status.is_terminal:
        return run
    new_vars = dict(run.vars or {})
    changed = False
    for key, value in list(new_vars.items()):
        if not isinstance(key, str) or not key.startswith("_") or fits_inline(value, max_inline_bytes):
            continue
        try:
            new = offload_large_values(
                value, artifact_store=artifact_store, run_id=run.run_id, max_inline_bytes=max_inline_bytes,
                base_tags={"source": "run_store_offload"}, root_path=f"vars.{key}",
                allow_offload=_private_vars_path, allow_root_replace=False)
        except Exception:
            new = value
        if new is not value:
            new_vars[key] = new
            changed = True
    output = run.output
    if output is not None and not fits_inline(output, max_inline_bytes):
        try:
            new_out = offload_large_values(
                output, artifact_store=artifact_store, run_id=run.run_id, max_inline_bytes=max_inline_bytes,
                base_tags={"source": "run_output_offload"}, root_path="output", allow_root_replace=True)
        except Exception:
            new_out = output
        if new_out is not output:
            output = new_out
            changed = True
    if not changed:
        return run
    return attrs.evolve(run, vars=new_vars, output=output)


def offload_step_record(record: StepRecord, *, artifact_store: ArtifactStore, max_inline_bytes: int) -> StepRecord:
    """A copy of a ledger record with large parts of ``effect`` and ``result`` offloaded (never their roots)."""
    if max_inline_bytes <= 0 or not record.run_id:
        return record
    fields: Dict[str, Any] = {}
    for name, source in (("effect", "ledger_effect_offload"), ("result", "ledger_result_offload")):
        value = getattr(record, name)
        if value is None or fits_inline(value, max_inline_bytes):
            continue
        try:
            new = offload_large_values(
                value, artifact_store=artifact_store, run_id=record.run_id, max_inline_bytes=max_inline_bytes,
                base_tags={"source": source}, root_path=f"ledger.{name}", allow_root_replace=False)
        except Exception:
            new = value
        if new is not value:
            fields[name] = new
    return attrs.evolve(record, **fields) if fields else record


# --- decorators -----------------------------------------------------------------------------------------------------
class _OffloadingBackend(StoreBackend):
    """Offloads a step commit, then hands it to the inner backend (one transaction, as without offloading). It
    declares the inner backend's capabilities and shares its run locks and sibling services."""

    def __init__(self, inner: StoreBackend, artifact_store: ArtifactStore, max_inline_bytes: int) -> None:
        self._inner = weakref.ref(inner)
        self._artifacts = artifact_store
        self.max_inline_bytes = max_inline_bytes
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.run_locks = inner.run_locks

    def artifact_store(self) -> Any:
        return self._artifacts

    def snapshot_store(self) -> Any:
        return self.inner.snapshot_store()

    def command_store(self) -> Any:
        return self.inner.command_store()

    @property
    def inner(self) -> Any:
        inner = self._inner()
        if inner is None:  # pragma: no cover - the stores keep their backend alive
            raise InvalidStateError("The store behind this offloading decorator is gone")
        return inner

    def commit_step(self, commit: StepCommit) -> None:
        run, run_json = commit.run, commit.run_json
        if run is not None:
            persisted = offload_run_state(run, artifact_store=self._artifacts,
                                          max_inline_bytes=self.max_inline_bytes)
            if persisted is not run:
                run, run_json = persisted, codec.encode_run(persisted)
        records: List[StepRecord] = []
        jsons: List[bytes] = []
        for record, text in zip(commit.records, commit.record_jsons):
            persisted_rec = offload_step_record(record, artifact_store=self._artifacts,
                                                max_inline_bytes=self.max_inline_bytes)
            records.append(persisted_rec)
            jsons.append(text if persisted_rec is record else codec.encode_record(persisted_rec))
        self.inner.commit_step(attrs.evolve(commit, run=run, run_json=run_json, records=records, record_jsons=jsons))

    def close(self) -> None:  # the inner backend belongs to whoever opened it
        pass


#: per inner backend (in its ``stash``): the offloading backends wrapping it, by (artifact store id, threshold)
_WRAPPERS = StashKey[Dict[Tuple[int, int], _OffloadingBackend]]()
_WRAPPERS_LOCK = threading.Lock()


def _shared_backend(inner_store: Any, artifact_store: ArtifactStore, max_inline_bytes: int) -> Optional[Any]:
    inner = getattr(inner_store, "backend", None)
    if not isinstance(inner, StoreBackend):
        return None
    key = (id(artifact_store), int(max_inline_bytes))
    per_backend = inner.stash.setdefault_factory(_WRAPPERS, dict)
    with _WRAPPERS_LOCK:
        wrapper = per_backend.get(key)
        if wrapper is None or wrapper.artifact_store() is not artifact_store:
            wrapper = _OffloadingBackend(inner, artifact_store, max_inline_bytes)
            per_backend[key] = wrapper
        return wrapper


class _Passthrough:
    """What both offloading decorators share: the wrapped store, the artifact store, the threshold, the shared
    offloading backend (one commit per step), and pass-through of the inner store's optional extras."""

    _inner: Any

    def __init__(self, inner: Any, *, artifact_store: ArtifactStore, max_inline_bytes: Optional[int] = None):
        self._inner = inner
        self._artifact_store = artifact_store
        self._max_inline_bytes = default_max_inline_bytes() if max_inline_bytes is None else int(max_inline_bytes)

    @property
    def artifact_store(self) -> ArtifactStore:
        return self._artifact_store

    @property
    def max_inline_bytes(self) -> int:
        return self._max_inline_bytes

    @property
    def backend(self) -> Optional[Any]:
        return _shared_backend(self._inner, self._artifact_store, self._max_inline_bytes)

    def __getattr__(self, name: str) -> Any:
        # Optional extras of the inner store (load_revision, find_by_idempotency_key, list_after, count, ...)
        # are offered exactly when the inner store has them, so duck-typed callers see the same capabilities.
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


class OffloadingRunStore(_Passthrough, RunStore):
    """Run-store decorator: a terminal run is persisted with large private values and ``output`` offloaded.

    The caller's ``RunState`` is untouched (a copy is persisted). Query methods pass through
    (``NotImplementedError`` when the inner store lacks them).
    """

    @property
    def inner(self) -> RunStore:
        return self._inner

    def save(self, run: RunState) -> None:
        self._inner.save(offload_run_state(run, artifact_store=self._artifact_store,
                                           max_inline_bytes=self._max_inline_bytes))

    def load(self, run_id: str) -> Optional[RunState]:
        return self._inner.load(run_id)

    def _inner_fn(self, name: str) -> Callable[..., Any]:
        fn = getattr(self._inner, name, None)
        if not callable(fn):
            raise NotImplementedError(f"Inner RunStore does not support {name}")
        return fn

    def list_runs(self, *, status=None, wait_reason=None, workflow_id=None, limit: int = 100):
        return self._inner_fn("list_runs")(status=status, wait_reason=wait_reason, workflow_id=workflow_id,
                                           limit=limit)

    def list_run_index(self, *, status=None, workflow_id=None, session_id=None, root_only: bool = False,
                       limit: int = 100):
        return self._inner_fn("list_run_index")(status=status, workflow_id=workflow_id, session_id=session_id,
                                                root_only=root_only, limit=limit)

    def list_due_wait_until(self, *, now_iso: str, limit: int = 100):
        return self._inner_fn("list_due_wait_until")(now_iso=now_iso, limit=limit)

    def list_children(self, *, parent_run_id: str, status=None):
        return self._inner_fn("list_children")(parent_run_id=parent_run_id, status=status)


class OffloadingLedgerStore(_Passthrough, LedgerStore):
    """Ledger decorator: large parts of ``effect`` / ``result`` are offloaded (never their roots)."""

    @property
    def inner(self) -> LedgerStore:
        return self._inner

    def append(self, record: StepRecord) -> None:
        self._inner.append(offload_step_record(record, artifact_store=self._artifact_store,
                                               max_inline_bytes=self._max_inline_bytes))

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        return self._inner.list(run_id)

    def subscribe(self, callback: Callable[[Dict[str, Any]], None], *, run_id: Optional[str] = None):
        fn = getattr(self._inner, "subscribe", None)
        if not callable(fn):
            raise InvalidStateError("Inner LedgerStore does not support subscribe()")
        return fn(callback, run_id=run_id)

    def count(self, run_id: str) -> int:
        fn = getattr(self._inner, "count", None)
        return int(fn(run_id)) if callable(fn) else len(self._inner.list(run_id))

    def count_many(self, run_ids: List[str]) -> Dict[str, int]:
        fn = getattr(self._inner, "count_many", None)
        if callable(fn):
            return dict(fn(run_ids))
        return {rid: self.count(rid) for rid in run_ids}

    def metrics_many(self, run_ids: List[str]) -> Dict[str, Dict[str, int]]:
        fn = getattr(self._inner, "metrics_many", None)
        return dict(fn(run_ids)) if callable(fn) else {}


__all__ = [
    "DEFAULT_MAX_INLINE_BYTES",
    "default_max_inline_bytes",
    "offload_large_values",
    "offload_run_state",
    "offload_step_record",
    "fits_inline",
    "OffloadingRunStore",
    "OffloadingLedgerStore",
]
