"""Corrupt records in a store (issue 14, items 8-10): one damaged checkpoint must not stop the store.

Stores are real LMDB / SQLite / JSON-files stores in tmp dirs, damaged behind the runtime's back with the storage
library itself (``lmdb`` rewriting one value, ``sqlite3`` UPDATE-ing one row, bytes of ``data.mdb`` overwritten):

* queries (``runs list``, the scheduler's polls) leave a corrupt run out, report it and go on; loading it by id
  still raises ``CorruptStoreError`` naming the run and the store;
* a scheduler drives the healthy RUNNING and due runs to completion and counts the corrupt one in its stats;
* ``abstractruntime store check`` lists the damaged records and exits 1 (0 when clean);
* a flipped byte that still decodes (a revision, a prompt) is caught by the checkpoint checksum;
* LMDB page corruption and other driver errors are ``error: ...`` with exit 2 in the CLI, never a traceback.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "support")]

import lmdb  # noqa: E402

from abstractruntime import Runtime, RunStatus  # noqa: E402
from abstractruntime.errors import CorruptStoreError  # noqa: E402
from abstractruntime_lmdb.store import SCHEMA_VERSION as LMDB_SCHEMA_VERSION  # noqa: E402
from abstractruntime_pluginkit.registry import WorkflowRegistry  # noqa: E402
from abstractruntime_scheduler import Scheduler  # noqa: E402
from abstractruntime_storekit.integrity import collect_skipped  # noqa: E402
from sched_flows import TIMER, USER  # noqa: E402

STORES = ["lmdb", "sqlite"]


# --- making and damaging stores ---------------------------------------------------------------------------------
def _url(scheme: str, tmp_path: Path) -> str:
    return f"lmdb://{tmp_path}/db" if scheme == "lmdb" else f"sqlite://{tmp_path}/db.sqlite"


def _path(url: str) -> Path:
    return Path(url.split("://", 1)[1])


def _open(url: str) -> Runtime:
    registry = WorkflowRegistry()
    for spec in (TIMER, USER):
        registry.register(spec)
    return Runtime.from_config({"store": url}, workflow_registry=registry)


def _rewrite_checkpoint(url: str, run_id: str, change) -> None:
    """Rewrite one stored checkpoint with ``change(bytes) -> bytes``, with the storage library itself."""
    path = _path(url)
    if url.startswith("lmdb"):
        env = lmdb.open(str(path), subdir=True, max_dbs=0)
        try:
            with env.begin(write=True) as txn:
                key = b"d:" + run_id.encode() + b"\x00"
                txn.put(key, change(txn.get(key)))
        finally:
            env.close()
    else:
        conn = sqlite3.connect(path)
        with conn:
            data = conn.execute("SELECT data FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
            conn.execute("UPDATE runs SET data = ? WHERE run_id = ?", (change(data.encode()).decode(), run_id))
        conn.close()


def _flip_at(data: bytes, marker: bytes, offset: int, new: bytes) -> bytes:
    i = data.rindex(marker) + len(marker) + offset
    assert data[i:i + 1] != new
    return data[:i] + new + data[i + 1:]


def _break_json(data: bytes) -> bytes:
    """One byte flipped so that the checkpoint cannot be decoded: ``"status":"...`` -> ``"status":#...``."""
    return _flip_at(data, b'"status":', 0, b"#")


def _silent_revision_flip(data: bytes) -> bytes:
    """One byte flipped that still decodes: the revision's first digit becomes another digit."""
    i = data.rindex(b'"revision":') + len(b'"revision":')
    return data[:i] + (b"7" if data[i:i + 1] != b"7" else b"3") + data[i + 1:]


def _silent_prompt_flip(data: bytes) -> bytes:
    """One byte flipped that still decodes: a letter of a stored string ("ok?" -> "oK?")."""
    return _flip_at(data, b'"prompt":"o', 0, b"K")


def _healthy_and_one_corrupt(url: str, healthy: int = 3):
    """``healthy`` RUNNING timer runs, two waiting runs whose timer is due, and one more RUNNING run whose
    checkpoint is then made undecodable. Returns (healthy run ids, corrupt run id)."""
    with _open(url) as rt:
        running = [rt.start(workflow=TIMER, vars={"delay": -1}) for _ in range(healthy)]
        due = []
        for _ in range(2):
            rid = rt.start(workflow=TIMER, vars={"delay": 0.2})
            assert rt.tick(workflow=TIMER, run_id=rid).status is RunStatus.WAITING
            due.append(rid)
        bad = rt.start(workflow=TIMER, vars={"delay": -1})
    _rewrite_checkpoint(url, bad, _break_json)
    time.sleep(0.3)  # the timers are due
    return running + due, bad


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
    return subprocess.run([sys.executable, "-m", "abstractruntime_cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


# --- item 9: checksums ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flip", [_silent_revision_flip, _silent_prompt_flip], ids=["revision", "prompt"])
@pytest.mark.parametrize("scheme", STORES)
def test_a_flipped_byte_that_still_decodes_fails_the_checksum(tmp_path, scheme, flip):
    url = _url(scheme, tmp_path)
    with _open(url) as rt:
        rid = rt.start(workflow=USER)
        assert rt.tick(workflow=USER, run_id=rid).status is RunStatus.WAITING
        other = rt.start(workflow=USER)
    _rewrite_checkpoint(url, rid, flip)
    with _open(url) as rt:
        with pytest.raises(CorruptStoreError) as info:
            rt.run_store.load(rid)
        message = str(info.value)
        assert rid in message and str(_path(url)) in message and "checksum" in message, message
        assert info.value.run_id == rid
        with pytest.raises(CorruptStoreError):
            rt.get_state(rid)
        assert rt.get_state(other).status is RunStatus.RUNNING  # the other runs are unaffected
        # a plain save (reference API) replaces the damaged checkpoint; the store is whole again
        replacement = attrs.evolve(rt.get_state(other), run_id=rid)
        rt.run_store.save(replacement)
        assert rt.run_store.load(rid) == replacement
        with collect_skipped() as skipped:
            assert sorted(r.run_id for r in rt.run_store.list_runs(status=RunStatus.RUNNING)) == sorted([rid, other])
            assert [r.run_id for r in rt.run_store.list_runs(status=RunStatus.WAITING)] == []
        assert skipped == []


@pytest.mark.parametrize("scheme", STORES)
def test_stores_written_without_checksums_still_open_and_read(tmp_path, scheme):
    """A store of the previous schema (no checksum: LMDB values without the header, SQLite without the column)
    opens, reads, and gets checksums as runs are saved again."""
    url = _url(scheme, tmp_path)
    with _open(url) as rt:
        rid = rt.start(workflow=USER)
        rt.tick(workflow=USER, run_id=rid)
    path = _path(url)
    if scheme == "lmdb":  # rewrite every checkpoint in the version-1 layout: revision, n, index entries, JSON
        env = lmdb.open(str(path), subdir=True, max_dbs=0)
        with env.begin(write=True) as txn:
            raw = txn.get(b"d:" + rid.encode() + b"\x00")
            _magic, _crc, revision, n = struct.unpack_from(">BIQI", raw)
            txn.put(b"d:" + rid.encode() + b"\x00", struct.pack(">QI", revision, n) + raw[17:])
            txn.put(b"m:schema_version", b"1")
        env.close()
    else:
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("ALTER TABLE runs DROP COLUMN checksum")
            conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        conn.close()
    with _open(url) as rt:
        state = rt.get_state(rid)
        assert state.status is RunStatus.WAITING and rt.run_store.load(rid).revision == state.revision
        done = rt.resume(workflow=USER, run_id=rid, wait_key=state.waiting.wait_key, payload={"text": "y"})
        assert done.status is RunStatus.COMPLETED
    if scheme == "sqlite":
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
        assert conn.execute("SELECT checksum FROM runs WHERE run_id = ?", (rid,)).fetchone()[0] is not None
        conn.close()
    else:
        env = lmdb.open(str(path), subdir=True, max_dbs=0, readonly=True)
        with env.begin() as txn:
            assert txn.get(b"m:schema_version") == str(LMDB_SCHEMA_VERSION).encode()
            assert txn.get(b"d:" + rid.encode() + b"\x00")[:1] == b"\xc5"
        env.close()


# --- item 8: queries and the scheduler skip a corrupt run -------------------------------------------------------
@pytest.mark.parametrize("scheme", STORES + ["jsonfiles"])
def test_queries_skip_and_report_a_corrupt_run_and_loading_it_raises(tmp_path, scheme, caplog):
    if scheme == "jsonfiles":
        url = f"jsonfiles://{tmp_path}/runs"
        healthy, bad = _healthy_and_one_corrupt_files(url)
    else:
        url = _url(scheme, tmp_path)
        healthy, bad = _healthy_and_one_corrupt(url)
    with _open(url) as rt:
        store = rt.run_store
        with collect_skipped() as skipped:
            listed = {r.run_id for r in store.list_runs(limit=100)}
            index = {r["run_id"] for r in store.list_run_index(limit=100)}
            running = {r.run_id for r in store.list_runs(status=RunStatus.RUNNING, limit=100)}
            workflow = {r.run_id for r in store.list_runs(workflow_id="timer_flow", limit=100)}
        assert listed == index == workflow == set(healthy)
        assert running == set(healthy[:3])
        assert bad in {r.run_id for r in skipped}
        with pytest.raises(CorruptStoreError) as info:
            store.load(bad)
        assert bad in str(info.value) and info.value.run_id == bad
    warnings = [r.getMessage() for r in caplog.records if "corrupt_run_skipped" in r.getMessage()]
    assert warnings and bad in warnings[0] and "store=" in warnings[0], warnings


def _healthy_and_one_corrupt_files(url: str):
    with _open(url) as rt:
        running = [rt.start(workflow=TIMER, vars={"delay": -1}) for _ in range(3)]
        due = []
        for _ in range(2):
            rid = rt.start(workflow=TIMER, vars={"delay": 0.2})
            assert rt.tick(workflow=TIMER, run_id=rid).status is RunStatus.WAITING
            due.append(rid)
        bad = rt.start(workflow=TIMER, vars={"delay": -1})
    run_file = _path(url) / f"run_{bad}.json"
    run_file.write_bytes(_flip_at(run_file.read_bytes(), b'"status":', 1, b"#"))
    time.sleep(0.3)
    return running + due, bad


@pytest.mark.parametrize("scheme", STORES + ["jsonfiles"])
def test_the_scheduler_drives_the_healthy_runs_and_counts_the_corrupt_one(tmp_path, scheme):
    if scheme == "jsonfiles":
        url = f"jsonfiles://{tmp_path}/runs"
        healthy, bad = _healthy_and_one_corrupt_files(url)
    else:
        url = _url(scheme, tmp_path)
        healthy, bad = _healthy_and_one_corrupt(url)
    with _open(url) as rt:
        scheduler = Scheduler(runtime=rt, registry=rt.workflow_registry)
        for _ in range(6):
            scheduler.poll_once()
        assert {rid: rt.get_state(rid).status for rid in healthy} == {rid: RunStatus.COMPLETED for rid in healthy}
        stats = scheduler.stats
        if scheme != "jsonfiles":  # its index leaves an undecodable run file out of status queries altogether
            assert stats.corrupt_runs == [bad], stats
            assert stats.corrupt_runs_skipped >= 6, stats
            assert sum(bad in e for e in stats.errors) == 1, stats.errors  # reported once, not every poll
        with pytest.raises(CorruptStoreError):
            rt.get_state(bad)


@pytest.mark.parametrize("scheme", STORES)
def test_a_running_scheduler_keeps_going_past_a_corrupt_run(tmp_path, scheme):
    url = _url(scheme, tmp_path)
    healthy, bad = _healthy_and_one_corrupt(url)
    with _open(url) as rt:
        scheduler = Scheduler(runtime=rt, registry=rt.workflow_registry, poll_interval_s=0.05)
        scheduler.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if all(rt.get_state(r).status is RunStatus.COMPLETED for r in healthy):
                    break
                time.sleep(0.05)
        finally:
            scheduler.stop()
        assert all(rt.get_state(r).status is RunStatus.COMPLETED for r in healthy)
        assert scheduler.stats.corrupt_runs == [bad]
        assert not any("poll failed" in e for e in scheduler.stats.errors), scheduler.stats.errors


# --- the CLI: runs list, store check ----------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", STORES)
def test_cli_runs_list_skips_the_corrupt_run_and_names_it(tmp_path, scheme):
    url = _url(scheme, tmp_path)
    healthy, bad = _healthy_and_one_corrupt(url)
    out = cli("--store", url, "--json", "runs", "list")
    assert out.returncode == 0, out.stderr
    assert {r["run_id"] for r in json.loads(out.stdout)} == set(healthy)
    assert f"run {bad} skipped" in out.stderr and "store check" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("scheme", STORES)
def test_cli_store_check_lists_damaged_records_and_exits_1(tmp_path, scheme):
    url = _url(scheme, tmp_path)
    with _open(url) as rt:
        clean_run = rt.start(workflow=USER)
        rt.tick(workflow=USER, run_id=clean_run)
    out = cli("--store", url, "store", "check")
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "no damaged records" in out.stdout

    _rewrite_checkpoint(url, clean_run, _silent_revision_flip)  # decodes, but fails its checksum
    path = _path(url)
    if scheme == "lmdb":  # and one ledger record that cannot be decoded
        env = lmdb.open(str(path), subdir=True, max_dbs=0)
        with env.begin(write=True) as txn:
            txn.put(b"d:" + clean_run.encode() + b"\x01" + struct.pack(">Q", 1), b"{not json")
        env.close()
    else:
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("UPDATE ledger SET data = '{not json' WHERE run_id = ? AND seq = 1", (clean_run,))
        conn.close()

    out = cli("--store", url, "store", "check", "--json")
    assert out.returncode == 1, (out.stdout, out.stderr)
    report = json.loads(out.stdout)
    assert report["ok"] is False and report["runs"] == 1 and report["ledger_records"] >= 1
    kinds = sorted((r["kind"], r["run_id"], r["seq"]) for r in report["corrupt"])
    assert kinds == [("checkpoint", clean_run, None), ("ledger", clean_run, 1)], report
    assert all(str(path) in r["error"] for r in report["corrupt"])

    out = cli("--store", url, "store", "check")  # the table for people
    assert out.returncode == 1 and clean_run in out.stdout and "2 damaged record(s)" in out.stdout


def test_cli_store_check_on_a_jsonfiles_store(tmp_path):
    url = f"jsonfiles://{tmp_path}/runs"
    _healthy, bad = _healthy_and_one_corrupt_files(url)
    out = cli("--store", url, "--json", "store", "check")
    assert out.returncode == 1, (out.stdout, out.stderr)
    report = json.loads(out.stdout)
    assert [(r["kind"], r["run_id"]) for r in report["corrupt"]] == [("checkpoint", bad)]


# --- item 10: driver errors -------------------------------------------------------------------------------------
def _leaf_pages(data: bytes, page_size: int = 4096):
    """Page numbers of LMDB leaf pages (flags P_LEAF = 0x02 at offset 10 of the page header)."""
    return [n for n in range(2, len(data) // page_size)
            if struct.unpack_from("<H", data, n * page_size + 10)[0] == 0x02]


def test_lmdb_page_corruption_is_an_error_line_and_exit_2_not_a_traceback(tmp_path):
    url = _url("lmdb", tmp_path)
    with _open(url) as rt:
        for _ in range(60):  # enough runs for a few leaf pages
            rt.start(workflow=TIMER, vars={"delay": 60, "pad": "x" * 200})
    data_file = _path(url) / "data.mdb"
    data = bytearray(data_file.read_bytes())
    leaves = _leaf_pages(bytes(data))
    assert len(leaves) >= 2, leaves
    for page in leaves:
        struct.pack_into("<H", data, page * 4096 + 10, 0xFFFF)  # page type flags: nothing LMDB knows
    data_file.write_bytes(bytes(data))

    for args in (["runs", "list"], ["--json", "runs", "list"]):
        out = cli("--store", url, *args)
        assert out.returncode == 2, (out.returncode, out.stdout, out.stderr[-2000:])
        assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr, out.stderr
        assert str(_path(url)) in out.stderr and "damaged" in out.stderr, out.stderr
    out = cli("--store", url, "store", "check")
    assert out.returncode in (1, 2) and "Traceback" not in out.stderr, (out.stdout, out.stderr)
    assert str(_path(url)) in out.stdout + out.stderr


def test_lmdb_driver_errors_become_store_errors_naming_the_directory(tmp_path):
    url = _url("lmdb", tmp_path)
    with _open(url) as rt:
        rid = rt.start(workflow=USER)
    data_file = _path(url) / "data.mdb"
    data = bytearray(data_file.read_bytes())
    for page in _leaf_pages(bytes(data)):
        struct.pack_into("<H", data, page * 4096 + 10, 0xFFFF)
    data_file.write_bytes(bytes(data))
    code = (
        "import sys\n"
        "from abstractruntime import Runtime\n"
        "from abstractruntime.errors import CorruptStoreError\n"
        "try:\n"
        f"    rt = Runtime.from_config({{'store': {url!r}}})\n"
        f"    rt.run_store.load({rid!r})\n"
        "except CorruptStoreError as exc:\n"
        "    print('corrupt:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("corrupt:"), (out.returncode, out.stdout, out.stderr)
    assert str(_path(url)) in out.stdout and "CorruptedError" in out.stdout


def test_sqlite_page_corruption_is_an_error_line_and_exit_2(tmp_path):
    url = _url("sqlite", tmp_path)
    with _open(url) as rt:
        for _ in range(40):
            rt.start(workflow=TIMER, vars={"delay": 60, "pad": "x" * 300})
    path = _path(url)
    data = bytearray(path.read_bytes())
    for off in range(4096, len(data), 4096):
        data[off:off + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    out = cli("--store", url, "runs", "list")
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr, out.stderr
    assert str(path) in out.stderr


# --- PostgreSQL: queries, the worker, store check -----------------------------------------------------------------
from postgres_support import pg_dsn, postgres_server, psycopg_installed  # noqa: E402,F401  (fixtures)


def test_postgres_queries_and_worker_go_past_a_corrupt_run(pg_dsn):
    import psycopg

    from abstractruntime_postgres.worker import PostgresWorker

    with _open(pg_dsn) as rt:
        bad = rt.start(workflow=TIMER, vars={"delay": -1})  # the oldest RUNNING run: claimed first
        healthy = [rt.start(workflow=TIMER, vars={"delay": -1}) for _ in range(3)]
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE abstractruntime.runs SET data = convert_to('{\"run_id\": #', 'UTF8') "
                         "WHERE run_id = %s", (bad,))
        with collect_skipped() as skipped:
            assert {r.run_id for r in rt.run_store.list_runs(status=RunStatus.RUNNING)} == set(healthy)
        assert [r.run_id for r in skipped] == [bad]
        with pytest.raises(CorruptStoreError, match=bad):
            rt.run_store.load(bad)

        worker = PostgresWorker(rt, rt.workflow_registry, worker_id="w", batch_size=1, listen=False)
        for _ in range(8):
            worker.run_once()
        assert {r: rt.get_state(r).status for r in healthy} == {r: RunStatus.COMPLETED for r in healthy}
        assert worker.stats.corrupt_runs == [bad]
        assert worker.stats.corrupt_runs_skipped == 1  # claimed once, then left alone until it changes
    out = cli("--store", pg_dsn, "--json", "store", "check")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert [(r["kind"], r["run_id"]) for r in json.loads(out.stdout)["corrupt"]] == [("checkpoint", bad)]
