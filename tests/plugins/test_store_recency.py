"""Newest-first queries and counts from the index (storekit.recency): ``list_runs`` / ``list_run_index`` read only
the runs they return, ``count_by_status`` reads index keys only, and an LMDB store written before schema 3 gets
its ``updated`` entries on open (or, opened read-only, is answered by reading its runs as before)."""

from __future__ import annotations

import json
import random
import struct
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, List

import lmdb
import pytest

from abstractruntime import codec
from abstractruntime.models import RunState, RunStatus, WaitReason, WaitState
from abstractruntime.storage.base import StepCommit
from abstractruntime_inmemory.store import MemoryBackend
from abstractruntime_jsonfiles.backend import JsonFilesBackend
from abstractruntime_lmdb.store import SCHEMA_VERSION, LmdbBackend
from abstractruntime_storekit import filter_runs, recency
from abstractruntime_storekit.integrity import collect_skipped

STATUSES = [RunStatus.COMPLETED, RunStatus.WAITING, RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED]


def _open(kind: str, path: Path) -> Any:
    if kind == "memory":
        return MemoryBackend()
    if kind == "jsonfiles":
        return JsonFilesBackend(str(path))
    return LmdbBackend(path, sync=False)


@pytest.fixture(params=["memory", "jsonfiles", "lmdb"])
def backend(request: Any, tmp_path: Path) -> Iterator[Any]:
    b = _open(request.param, tmp_path / "store")
    yield b
    b.close()


def _run(i: int, updated: str) -> RunState:
    run = RunState.new(workflow_id=f"wf-{i % 3}", entry_node="n", vars={"i": i})
    run.status = STATUSES[i % 5] if i % 7 else RunStatus.CANCELLED  # cancelled: a small set
    if run.status is RunStatus.WAITING:
        reason = WaitReason.USER if i % 2 else WaitReason.EVENT
        run.waiting = WaitState(reason=reason, wait_key=f"k{i}", prompt="?", resume_to_node="n")
    run.updated_at = updated
    return run


def _populate(backend: Any, n: int, *, ties: bool = False) -> List[RunState]:
    rng = random.Random(7)
    runs = []
    for i in range(n):
        second = rng.randrange(0, 20) if ties else i  # ties: many runs share an updated_at
        runs.append(_run(i, f"2024-05-01T10:{second // 60:02d}:{second % 60:02d}.000000+00:00"))
    for run in runs:
        backend.commit_step(StepCommit(run=run, run_json=codec.encode_run(run)))
    return runs


QUERIES = [dict(), dict(status=RunStatus.WAITING), dict(status=RunStatus.CANCELLED), dict(workflow_id="wf-1"),
           dict(status=RunStatus.RUNNING, workflow_id="wf-2"), dict(wait_reason=WaitReason.USER),
           dict(status=RunStatus.COMPLETED, workflow_id="nope")]


def _expected(runs: List[RunState], limit: int, **query: Any) -> List[str]:
    """list_runs' definition: newest updated_at first, ties in ascending run id order."""
    ordered = filter_runs(sorted(runs, key=lambda r: r.run_id), **query)
    return [r.run_id for r in ordered[:limit]]


@pytest.mark.parametrize("ties", [False, True])
def test_list_runs_from_the_index_matches_its_definition(backend: Any, ties: bool, monkeypatch: Any) -> None:
    runs = _populate(backend, 120, ties=ties)
    for small_set, walk_limit in ((2000, 20_000), (5, 30)):  # also: every filter "broad", short walks
        monkeypatch.setattr(recency, "SMALL_SET", small_set)
        monkeypatch.setattr(recency, "WALK_LIMIT", walk_limit)
        for query in QUERIES:
            for limit in (1, 7, 50, 500):
                got = [r.run_id for r in backend.run_store.list_runs(limit=limit, **query)]
                assert got == _expected(runs, limit, **query), (query, limit, small_set)
        rows = backend.run_store.list_run_index(status=RunStatus.FAILED, workflow_id="wf-0", limit=4)
        assert [r["run_id"] for r in rows] == _expected(runs, 4, status=RunStatus.FAILED, workflow_id="wf-0")


def test_list_runs_follows_updates(backend: Any) -> None:
    runs = _populate(backend, 30)
    old = runs[0]
    old.status, old.updated_at = RunStatus.FAILED, "2024-06-01T00:00:00.000000+00:00"
    backend.commit_step(StepCommit(run=old, run_json=codec.encode_run(old)))
    assert backend.run_store.list_runs(limit=1)[0].run_id == old.run_id
    assert backend.run_store.list_runs(status=RunStatus.FAILED, limit=1)[0].run_id == old.run_id
    assert old.run_id not in {r.run_id for r in backend.run_store.list_runs(status=RunStatus.CANCELLED)}


def test_count_by_status_reads_the_index(backend: Any) -> None:
    runs = _populate(backend, 90)
    assert backend.run_store.count_by_status() == dict(Counter(r.status.value for r in runs))
    for workflow in ("wf-0", "wf-2", "none"):
        expected = Counter(r.status.value for r in runs if r.workflow_id == workflow)
        assert backend.run_store.count_by_status(workflow_id=workflow) == dict(expected)


def test_lmdb_first_page_decodes_only_its_runs(tmp_path: Path) -> None:
    """An old run whose checkpoint JSON is damaged is neither read nor reported by a first page that does not
    show it (before: every checkpoint was decoded, so it was reported as skipped)."""
    backend = LmdbBackend(tmp_path / "db", sync=False)
    try:
        runs = _populate(backend, 60)
        oldest = runs[0].run_id
        key = b"d:" + oldest.encode() + b"\x00"
        with backend.env.begin(write=True) as txn:
            raw = txn.get(key)
            txn.put(key, raw[:-5] + b"#####")  # the checksum no longer matches: loading it raises
        with collect_skipped() as skipped:
            page = backend.run_store.list_runs(limit=10)
            waiting = backend.run_store.list_runs(status=RunStatus.WAITING, limit=3)
        assert [r.run_id for r in page] == _expected(runs, 10)
        assert [r.run_id for r in waiting] == _expected(runs, 3, status=RunStatus.WAITING)
        assert skipped == []
        with collect_skipped() as skipped:  # a page that includes it leaves it out and reports it
            everything = backend.run_store.list_runs(limit=1000)
        assert oldest not in {r.run_id for r in everything} and len(everything) == 59
        assert [s.run_id for s in skipped] and {s.run_id for s in skipped} == {oldest}
    finally:
        backend.close()


def _downgrade_to_schema_2(path: Path) -> None:
    """Rewrite a store as schema version 2 wrote it: no ``updated`` index keys, none in the stored entries."""
    env = lmdb.open(str(path), subdir=True, max_dbs=0)
    with env.begin(write=True) as txn:
        cur = txn.cursor()
        stale = [bytes(k) for k in cur.iternext(values=False) if k.startswith(b"x:updated\x00")]
        for k in stale:
            txn.delete(k)
        for key, raw in list(txn.cursor()):
            if key.startswith(b"d:") and key.endswith(b"\x00"):
                _magic, _crc, revision, n = struct.unpack_from(">BIQI", raw)
                entries = [e for e in json.loads(raw[17:17 + n]) if e[0] != "updated"]
                from abstractruntime_lmdb.values import pack_value

                txn.put(key, pack_value(revision, json.dumps(entries, separators=(",", ":")).encode(),
                                        raw[17 + n:]))
        txn.put(b"m:schema_version", b"2")
    env.close()


def test_lmdb_store_of_schema_2_is_upgraded_on_open(tmp_path: Path) -> None:
    path = tmp_path / "db"
    backend = LmdbBackend(path, sync=False)
    runs = _populate(backend, 40)
    backend.close()
    _downgrade_to_schema_2(path)

    reader = LmdbBackend(path, sync=False, read_only=True)  # read-only: nothing upgraded, runs read as before
    try:
        assert not reader.updated_index
        assert [r.run_id for r in reader.run_store.list_runs(limit=5)] == _expected(runs, 5)
        assert reader.run_store.count_by_status() is None
    finally:
        reader.close()

    backend = LmdbBackend(path, sync=False)
    try:
        with backend.env.begin() as txn:
            assert txn.get(b"m:schema_version") == str(SCHEMA_VERSION).encode() == b"3"
            assert len([k for k, _ in txn.cursor() if k.startswith(b"x:updated\x00")]) == 40
        assert [r.run_id for r in backend.run_store.list_runs(limit=5)] == _expected(runs, 5)
        assert backend.run_store.count_by_status() == dict(Counter(r.status.value for r in runs))
        run = backend.run_store.load(runs[3].run_id)  # and commits keep the entries right
        run.updated_at = "2030-01-01T00:00:00.000000+00:00"
        backend.commit_step(StepCommit(run=run, run_json=codec.encode_run(run), expected_revision=run.revision))
        assert backend.run_store.list_runs(limit=1)[0].run_id == run.run_id
    finally:
        backend.close()
