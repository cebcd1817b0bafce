"""Snapshots: named copies of a run's state (reference API ``abstractruntime.storage.snapshots``).

A :class:`Snapshot` holds the run's checkpoint as a plain dict (``run_state``). Stores return copies: changing a
loaded snapshot never changes the stored one.
"""

from __future__ import annotations

import abc
import json
import os
import re
import threading
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from attrs import define, field

from abstractruntime import codec
from abstractruntime.logs import get_logger
from abstractruntime.errors import ValidationError
from abstractruntime.models import RunState, utc_now_iso
from abstractruntime_storekit.files import write_atomic

log = get_logger("abstractruntime.snapshots")

_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def validate_snapshot_id(snapshot_id: Any) -> str:
    """Snapshot ids name files: only letters, digits, ``_`` and ``-`` (``ValueError`` otherwise)."""
    if not isinstance(snapshot_id, str) or not _ID_RE.match(snapshot_id):
        raise ValidationError(f"Invalid snapshot id {snapshot_id!r}: use only letters, digits, '_' and '-'")
    return snapshot_id


def _tag_list(tags: Any) -> List[str]:
    if isinstance(tags, str):
        return [tags]
    return [str(t) for t in (tags or [])]


@define
class Snapshot:
    snapshot_id: str
    run_id: str
    step_id: Optional[str] = None
    name: str = ""
    description: Optional[str] = None
    tags: List[str] = field(factory=list, converter=_tag_list)
    created_at: str = field(factory=utc_now_iso)
    updated_at: str = field(factory=utc_now_iso)
    run_state: Dict[str, Any] = field(factory=dict)

    @classmethod
    def from_run(
        cls,
        *,
        run: RunState,
        name: str,
        description: Optional[str] = None,
        tags: Optional[List[str]] = None,
        step_id: Optional[str] = None,
    ) -> "Snapshot":
        """A new snapshot (uuid4 id) of ``run``: ``run_state`` is a deep copy of the run's dict form."""
        codec.check_run(run)  # the JSON invariant, naming the offending path
        state = codec.from_json_text(codec.to_json_bytes(codec.run_to_dict(run)))  # a deep copy of the dict form
        return cls(snapshot_id=str(uuid.uuid4()), run_id=run.run_id, step_id=step_id, name=name,
                   description=description, tags=list(tags or []), run_state=state)

    def to_dict(self) -> Dict[str, Any]:
        return codec.from_json_text(codec.to_json_bytes(codec.converter.unstructure(self)))

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Snapshot":
        return codec.converter.structure(dict(data), cls)

    def to_run_state(self) -> RunState:
        """The snapshot's run state as a ``RunState`` (a fresh object)."""
        return codec.run_from_dict(codec.from_json_text(codec.to_json_bytes(self.run_state)))


class SnapshotStore(abc.ABC):
    @abc.abstractmethod
    def save(self, snapshot: Snapshot) -> None: ...

    @abc.abstractmethod
    def load(self, snapshot_id: str) -> Optional[Snapshot]: ...

    @abc.abstractmethod
    def delete(self, snapshot_id: str) -> bool: ...

    @abc.abstractmethod
    def list(
        self,
        *,
        run_id: Optional[str] = None,
        tag: Optional[str] = None,
        query: Optional[str] = None,
        limit: int = 100,
    ) -> List[Snapshot]: ...


def filter_snapshots(snapshots: List[Snapshot], *, run_id: Optional[str], tag: Optional[str],
                     query: Optional[str], limit: int) -> List[Snapshot]:
    """Exact ``run_id``, case-insensitive exact ``tag``, case-insensitive substring ``query`` on name or
    description; newest ``created_at`` first; at most ``limit`` (``limit <= 0``: all)."""
    tag_l = tag.lower() if tag is not None else None
    query_l = query.lower() if query else None
    out = []
    for s in snapshots:
        if run_id is not None and s.run_id != run_id:
            continue
        if tag_l is not None and not any(t.lower() == tag_l for t in s.tags):
            continue
        if query_l is not None and query_l not in (s.name or "").lower() \
                and query_l not in (s.description or "").lower():
            continue
        out.append(s)
    out.sort(key=lambda s: (s.created_at or "", s.snapshot_id), reverse=True)
    return out if int(limit) <= 0 else out[: int(limit)]


class InMemorySnapshotStore(SnapshotStore):
    def __init__(self) -> None:
        self._items: Dict[str, bytes] = {}
        self._lock = threading.Lock()

    def save(self, snapshot: Snapshot) -> None:
        snapshot.updated_at = utc_now_iso()
        data = codec.to_json_bytes(snapshot.to_dict())
        with self._lock:
            self._items[snapshot.snapshot_id] = data

    def load(self, snapshot_id: str) -> Optional[Snapshot]:
        with self._lock:
            data = self._items.get(snapshot_id)
        return Snapshot.from_dict(codec.from_json_text(data)) if data is not None else None

    def delete(self, snapshot_id: str) -> bool:
        with self._lock:
            return self._items.pop(snapshot_id, None) is not None

    def list(self, *, run_id: Optional[str] = None, tag: Optional[str] = None, query: Optional[str] = None,
             limit: int = 100) -> List[Snapshot]:
        with self._lock:
            items = list(self._items.values())
        return filter_snapshots([Snapshot.from_dict(codec.from_json_text(d)) for d in items],
                                run_id=run_id, tag=tag, query=query, limit=limit)


class JsonSnapshotStore(SnapshotStore):
    """One ``snapshot_<id>.json`` file per snapshot in ``base_dir`` (created). Writes are atomic; unreadable
    files are skipped (and logged) by ``list`` and read as missing by ``load``."""

    def __init__(self, base_dir: Union[str, os.PathLike]) -> None:
        self._dir = Path(base_dir).expanduser()
        self._dir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"JsonSnapshotStore({str(self._dir)!r})"

    @property
    def base_dir(self) -> Path:
        return self._dir

    def _path(self, snapshot_id: str) -> Path:
        return self._dir / f"snapshot_{validate_snapshot_id(snapshot_id)}.json"

    @staticmethod
    def _read(path: Path) -> Optional[Snapshot]:
        try:
            return Snapshot.from_dict(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except Exception as exc:
            log.warning("snapshot_unreadable", path=str(path), error=f"{type(exc).__name__}: {exc}")
            return None

    def save(self, snapshot: Snapshot) -> None:
        path = self._path(snapshot.snapshot_id)
        snapshot.updated_at = utc_now_iso()
        write_atomic(path, json.dumps(snapshot.to_dict(), ensure_ascii=False, indent=2).encode("utf-8"))

    def load(self, snapshot_id: str) -> Optional[Snapshot]:
        return self._read(self._path(snapshot_id))

    def delete(self, snapshot_id: str) -> bool:
        try:
            self._path(snapshot_id).unlink()
            return True
        except FileNotFoundError:
            return False

    def list(self, *, run_id: Optional[str] = None, tag: Optional[str] = None, query: Optional[str] = None,
             limit: int = 100) -> List[Snapshot]:
        found = []
        for name in sorted(os.listdir(self._dir)):
            if not (name.startswith("snapshot_") and name.endswith(".json")):
                continue
            snap = self._read(self._dir / name)
            if snap is not None:
                found.append(snap)
        return filter_snapshots(found, run_id=run_id, tag=tag, query=query, limit=limit)


__all__ = ["Snapshot", "SnapshotStore", "InMemorySnapshotStore", "JsonSnapshotStore", "validate_snapshot_id"]
