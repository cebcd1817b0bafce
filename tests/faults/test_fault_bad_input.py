"""Bad stores on disk / in the database: truncated or garbage files, a newer schema version, a ledger with a gap.

Each case is made with the store's own storage library (lmdb, sqlite3, psycopg) behind the runtime's back, then the
runtime is opened on it. A damaged store must be refused with a typed ``StoreError``/``CorruptStoreError`` naming
the file (never a crash of the process, never silently presented as an empty store), and other stores must be
untouched. The LMDB cases that might crash the interpreter (SIGBUS on a truncated memory map) run in a child.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1]),
                str(Path(__file__).resolve().parents[1] / "support")]

import lmdb  # noqa: E402

from abstractruntime import Runtime, RunStatus  # noqa: E402
from abstractruntime.errors import CorruptStoreError, LedgerGapError, StoreError  # noqa: E402
from crash_flow import FLOW, PaymentsPlugin  # noqa: E402
from fault_support import SUPPORT, digest_tree  # noqa: E402
from postgres_support import pg_dsn, postgres_server, psycopg_installed  # noqa: E402,F401  (fixtures)


def _make_store(url: str, provider: Path, runs: int = 1) -> list:
    """Create a store with ``runs`` completed checkout runs (4 ledger records each); return their ids."""
    rt = Runtime.from_config({"store": url}, plugins=[PaymentsPlugin(str(provider))])
    try:
        ids = []
        for _ in range(runs):
            rid = rt.start(workflow=FLOW)
            assert rt.tick(workflow=FLOW, run_id=rid).status is RunStatus.COMPLETED
            ids.append(rid)
        return ids
    finally:
        rt.close()


def _open(url: str, provider: Path) -> Runtime:
    return Runtime.from_config({"store": url}, plugins=[PaymentsPlugin(str(provider))])


def _assert_readable(url: str, provider: Path, run_id: str) -> None:
    rt = _open(url, provider)
    try:
        assert rt.get_state(run_id).status is RunStatus.COMPLETED
        assert len(rt.get_ledger(run_id)) == 4
        assert rt.verify_ledger(run_id)["ok"] is True
    finally:
        rt.close()


# --- truncated / garbage files ------------------------------------------------------------------------------------
PROBE = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = [sys.argv[3]]
    from abstractruntime import Runtime
    from crash_flow import PaymentsPlugin
    url, run_id = sys.argv[1], sys.argv[2]
    try:
        rt = Runtime.from_config({"store": url}, plugins=[PaymentsPlugin(sys.argv[4])])
        try:
            rt.get_state(run_id)
            rt.get_ledger(run_id)
            out = {"error": None}
        finally:
            rt.close()
    except Exception as exc:
        from abstractruntime.errors import StoreError, CorruptStoreError
        out = {"error": type(exc).__name__, "store_error": isinstance(exc, StoreError),
               "corrupt": isinstance(exc, CorruptStoreError), "message": str(exc)}
    print(json.dumps(out), flush=True)
    """
)


def _probe_in_child(url: str, run_id: str, provider: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, url, run_id, SUPPORT, str(provider)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (f"opening the damaged store killed the process (rc={proc.returncode}, "
                                  f"e.g. SIGBUS=-7): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("size", [0, 100, 8192], ids=["empty", "inside-meta-page", "meta-pages-only"])
def test_truncated_lmdb_data_file_is_refused_with_a_store_error(tmp_path, size):
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad_id = _make_store(f"lmdb://{bad}", tmp_path / "p")[0]
    good_id = _make_store(f"lmdb://{good}", tmp_path / "p")[0]
    good_before = digest_tree(good)
    data = bad / "data.mdb"
    assert data.stat().st_size > size
    os.truncate(data, size)

    got = _probe_in_child(f"lmdb://{bad}", bad_id, tmp_path / "p")
    assert got["error"] is not None, (
        f"a data.mdb truncated to {size} bytes was opened without error (the run just vanished or read fine)")
    assert got["store_error"], got
    assert str(bad) in got["message"], got

    assert digest_tree(good) == good_before
    _assert_readable(f"lmdb://{good}", tmp_path / "p", good_id)


@pytest.mark.parametrize("damage", ["header", "pages", "truncated"])
def test_corrupt_sqlite_file_is_refused_with_corrupt_store_error(tmp_path, damage):
    bad, good = tmp_path / "bad.sqlite", tmp_path / "other" / "good.sqlite"
    bad_ids = _make_store(f"sqlite://{bad}", tmp_path / "p", runs=20)
    good_id = _make_store(f"sqlite://{good}", tmp_path / "p")[0]
    good_before = digest_tree(good.parent)
    data = bytearray(bad.read_bytes())
    if damage == "header":
        data[0:100] = b"\xde\xad\xbe\xef" * 25
    elif damage == "pages":
        for off in range(4096, len(data), 4096):
            data[off:off + 64] = b"\xff" * 64
    else:
        data = data[: len(data) // 2]
    bad.write_bytes(bytes(data))

    with pytest.raises(CorruptStoreError) as info:
        rt = _open(f"sqlite://{bad}", tmp_path / "p")
        try:
            for rid in bad_ids:
                rt.get_state(rid)
                rt.get_ledger(rid)
        finally:
            rt.close()
    assert str(bad) in str(info.value)

    assert digest_tree(good.parent) == good_before
    _assert_readable(f"sqlite://{good}", tmp_path / "p", good_id)


def _lmdb_put(path: Path, key: bytes, value: bytes) -> None:
    env = lmdb.open(str(path), subdir=True, max_dbs=0)
    try:
        with env.begin(write=True) as txn:
            txn.put(key, value)
    finally:
        env.close()


def test_undecodable_ledger_record_names_the_record(tmp_path):
    lm, sq = tmp_path / "lm", tmp_path / "db.sqlite"
    lm_id = _make_store(f"lmdb://{lm}", tmp_path / "p")[0]
    sq_id = _make_store(f"sqlite://{sq}", tmp_path / "p")[0]
    _lmdb_put(lm, b"d:" + lm_id.encode() + b"\x01" + struct.pack(">Q", 3), b"{not json")
    with sqlite3.connect(sq) as conn:
        conn.execute("UPDATE ledger SET data = '{not json' WHERE run_id = ? AND seq = 3", (sq_id,))
    conn.close()
    for url, rid, where in ((f"lmdb://{lm}", lm_id, lm), (f"sqlite://{sq}", sq_id, sq)):
        rt = _open(url, tmp_path / "p")
        try:
            with pytest.raises(CorruptStoreError) as info:
                rt.get_ledger(rid)
            msg = str(info.value)
            assert str(where) in msg and "ledger record 3" in msg and rid in msg
            assert rt.get_state(rid).status is RunStatus.COMPLETED  # the checkpoint is still readable
        finally:
            rt.close()


# --- a newer schema version ---------------------------------------------------------------------------------------
def _assert_names_versions(exc: BaseException, newer: int, ours: int) -> None:
    msg = str(exc)
    assert str(newer) in msg and str(ours) in msg, msg
    assert "newer" in msg and "Nothing was changed" in msg, msg


def test_lmdb_newer_schema_version_is_refused_and_nothing_changes(tmp_path):
    from abstractruntime_lmdb.store import SCHEMA_VERSION

    path = tmp_path / "db"
    rid = _make_store(f"lmdb://{path}", tmp_path / "p")[0]
    newer = SCHEMA_VERSION + 1
    _lmdb_put(path, b"m:schema_version", str(newer).encode())
    before = (path / "data.mdb").read_bytes()
    with pytest.raises(StoreError) as info:
        _open(f"lmdb://{path}", tmp_path / "p")
    _assert_names_versions(info.value, newer, SCHEMA_VERSION)
    assert str(path) in str(info.value)
    assert (path / "data.mdb").read_bytes() == before
    env = lmdb.open(str(path), subdir=True, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            assert txn.get(b"m:schema_version") == str(newer).encode()
            assert txn.get(b"d:" + rid.encode() + b"\x00") is not None
    finally:
        env.close()


def test_sqlite_newer_schema_version_is_refused_and_nothing_changes(tmp_path):
    from abstractruntime_sqlite.store import SCHEMA_VERSION

    path = tmp_path / "db.sqlite"
    _make_store(f"sqlite://{path}", tmp_path / "p")
    newer = SCHEMA_VERSION + 1
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(newer),))
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        _open(f"sqlite://{path}", tmp_path / "p")
    _assert_names_versions(info.value, newer, SCHEMA_VERSION)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(newer),)
        assert conn.execute("SELECT count(*) FROM ledger").fetchone() == (4,)
    finally:
        conn.close()


def test_postgres_newer_schema_version_is_refused_and_nothing_changes(pg_dsn, tmp_path):
    import psycopg

    from abstractruntime_postgres.schema import SCHEMA_VERSION

    _make_store(pg_dsn, tmp_path / "p")
    newer = SCHEMA_VERSION + 1
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO abstractruntime.abstractruntime_schema (version) VALUES (%s)", (newer,))
        snapshot = lambda: (  # noqa: E731
            conn.execute("SELECT array_agg(version ORDER BY version) FROM abstractruntime.abstractruntime_schema")
            .fetchone(),
            conn.execute("SELECT count(*) FROM abstractruntime.runs").fetchone(),
            conn.execute("SELECT count(*) FROM abstractruntime.ledger").fetchone(),
            conn.execute("SELECT array_agg(table_name::text ORDER BY table_name) FROM information_schema.tables "
                         "WHERE table_schema = 'abstractruntime'").fetchone(),
        )
        before = snapshot()
        with pytest.raises(StoreError) as info:
            _open(pg_dsn, tmp_path / "p")
        _assert_names_versions(info.value, newer, SCHEMA_VERSION)
        assert snapshot() == before


# --- a ledger with a gap ------------------------------------------------------------------------------------------
GAP_SEQ = 3  # the 'done' completion row: a middle record that no idempotency entry points to


def _delete_ledger_record(scheme: str, url: str, path: Path, run_id: str, seq: int) -> None:
    if scheme == "lmdb":
        env = lmdb.open(str(path), subdir=True, max_dbs=0)
        try:
            with env.begin(write=True) as txn:
                assert txn.delete(b"d:" + run_id.encode() + b"\x01" + struct.pack(">Q", seq))
        finally:
            env.close()
    elif scheme == "sqlite":
        conn = sqlite3.connect(path)
        with conn:
            assert conn.execute("DELETE FROM ledger WHERE run_id = ? AND seq = ?", (run_id, seq)).rowcount == 1
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute("DELETE FROM abstractruntime.ledger WHERE run_id = %s AND seq = %s", (run_id, seq))
            assert cur.rowcount == 1


@pytest.fixture
def gap_store(request, tmp_path):
    """Two completed runs; the first loses its record ``GAP_SEQ`` behind the runtime's back."""
    scheme = request.param
    if scheme == "lmdb":
        path = tmp_path / "db"
        url = f"lmdb://{path}"
    elif scheme == "sqlite":
        path = tmp_path / "db.sqlite"
        url = f"sqlite://{path}"
    else:
        path = None
        url = request.getfixturevalue("pg_dsn")
    run_id, other_id = _make_store(url, tmp_path / "p", runs=2)
    rt = _open(url, tmp_path / "p")
    try:
        full = rt.get_ledger(run_id)
    finally:
        rt.close()
    assert len(full) == 4
    _delete_ledger_record(scheme, url, path, run_id, GAP_SEQ)
    rt = _open(url, tmp_path / "p")
    rt.gap_test_url, rt.gap_test_other = url, other_id  # for the CLI and other-run checks
    yield rt, run_id, full
    rt.close()


GAP_STORES = ["lmdb", "sqlite", "postgres"]


def _hashes(rows):
    return [r["record_hash"] for r in rows]


def _stored(full):
    return [r for i, r in enumerate(full) if i != GAP_SEQ - 1]


@pytest.mark.parametrize("gap_store", GAP_STORES, indirect=True)
def test_ledger_gap_is_reported_by_verify_ledger_at_the_right_index(gap_store):
    rt, run_id, full = gap_store
    report = rt.verify_ledger(run_id)
    assert report["ok"] is False
    assert report["first_bad_index"] == GAP_SEQ - 1
    assert [(e["index"], e["type"]) for e in report["errors"]] == [(GAP_SEQ - 1, "prev_hash_mismatch")], report
    err = report["errors"][0]
    assert err["expected_prev_hash"] == full[GAP_SEQ - 2]["record_hash"]
    assert err["actual_prev_hash"] == full[GAP_SEQ - 1]["record_hash"]
    assert report["count"] == 3, report  # the records that are actually stored, each walked once


@pytest.mark.parametrize("gap_store", GAP_STORES, indirect=True)
def test_list_of_a_gapped_ledger_raises_ledger_gap_error_with_the_stored_rows(gap_store):
    rt, run_id, full = gap_store
    for read in (rt.ledger_store.list, rt.get_ledger):
        with pytest.raises(LedgerGapError) as info:
            read(run_id)
        err = info.value
        assert isinstance(err, CorruptStoreError)
        assert (err.run_id, err.missing_seq, err.found_seq, err.cursor) == (run_id, GAP_SEQ, GAP_SEQ + 1, 4)
        assert _hashes(err.records) == _hashes(_stored(full))  # nothing else is lost to a caller that catches it
        message = str(err)
        assert f"ledger of run {run_id} is missing record seq {GAP_SEQ} (found seq {GAP_SEQ + 1} after seq " \
               f"{GAP_SEQ - 1})" in message
        assert "restore it from a backup" in message and "abstractruntime ledger verify" in message
    # count stays the sequence head (documented in docs/stores.md), not the number of stored rows
    assert rt.ledger_store.count(run_id) == 4


@pytest.mark.parametrize("gap_store", GAP_STORES, indirect=True)
def test_list_after_raises_only_for_a_page_that_skips_a_seq(gap_store):
    rt, run_id, full = gap_store
    ledger = rt.ledger_store
    rows, cursor = ledger.list_after(run_id=run_id, after=0, limit=GAP_SEQ - 1)  # the pages before the gap
    assert (_hashes(rows), cursor) == (_hashes(full[:GAP_SEQ - 1]), GAP_SEQ - 1)
    rows, cursor = ledger.list_after(run_id=run_id, after=GAP_SEQ, limit=10)  # and after it
    assert (_hashes(rows), cursor) == (_hashes(full[GAP_SEQ:]), 4)
    for after, limit, expected in [(0, 1000, _stored(full)), (GAP_SEQ - 1, 1, full[GAP_SEQ:])]:
        with pytest.raises(LedgerGapError) as info:
            ledger.list_after(run_id=run_id, after=after, limit=limit)
        err = info.value
        assert (err.missing_seq, err.found_seq, err.cursor) == (GAP_SEQ, GAP_SEQ + 1, 4)
        assert _hashes(err.records) == _hashes(expected)


@pytest.mark.parametrize("limit", [1, 2, 1000])
@pytest.mark.parametrize("gap_store", GAP_STORES, indirect=True)
def test_list_after_pages_over_a_gap_without_repeats_with_the_errors_cursor(gap_store, limit):
    rt, run_id, full = gap_store
    ledger = rt.ledger_store
    paged, cursor, cursors, gaps = [], 0, [], 0
    for _ in range(10):
        try:
            rows, cursor = ledger.list_after(run_id=run_id, after=cursor, limit=limit)
        except LedgerGapError as exc:  # the way to page on: the error carries the page and its cursor
            rows, cursor, gaps = exc.records, exc.cursor, gaps + 1
        cursors.append(cursor)
        if not rows:
            break
        paged.extend(rows)
    assert _hashes(paged) == _hashes(_stored(full)), cursors
    assert (cursor, gaps) == (4, 1)  # the cursor is the last seq seen, so appending more records continues after it


@pytest.mark.parametrize("gap_store", GAP_STORES, indirect=True)
def test_a_gapped_run_still_loads_and_the_other_runs_are_unaffected(gap_store):
    rt, run_id, _full = gap_store
    assert rt.run_store.load(run_id).status is RunStatus.COMPLETED
    assert rt.get_state(run_id).status is RunStatus.COMPLETED
    other = rt.gap_test_other
    assert len(rt.get_ledger(other)) == 4
    assert rt.ledger_store.list_after(run_id=other, after=0, limit=10)[1] == 4
    assert rt.verify_ledger(other)["ok"] is True


@pytest.mark.parametrize("gap_store", GAP_STORES, indirect=True)
def test_cli_ledger_show_prints_the_gap_error_and_verify_names_the_record(gap_store, capsys):
    from abstractruntime_cli.main import main

    rt, run_id, _full = gap_store
    url, other = rt.gap_test_url, rt.gap_test_other
    rt.close()  # one process may hold an LMDB environment once; the CLI opens its own
    assert main(["--store", url, "ledger", "show", run_id]) == 2
    out = capsys.readouterr()
    assert out.err.startswith("error: ") and "Traceback" not in out.err
    assert f"ledger of run {run_id} is missing record seq {GAP_SEQ}" in out.err
    assert main(["--store", url, "ledger", "show", other]) == 0
    assert main(["--store", url, "ledger", "verify", run_id]) == 1
    assert f"first bad record #{GAP_SEQ} (prev_hash_mismatch;" in capsys.readouterr().out


@pytest.mark.parametrize("seqs, after, gap", [
    ([], 0, None), ([1, 2, 3], 0, None), ([3, 4], 2, None),
    ([1, 2, 4], 0, (3, 4)), ([2, 3], 0, (1, 2)), ([4, 5], 2, (3, 4)), ([1, 5, 6], 0, (2, 5)),
])
def test_check_contiguous(seqs, after, gap):
    from abstractruntime_storekit import check_contiguous

    rows = [{"seq": s} for s in seqs]
    if gap is None:
        assert check_contiguous("r", seqs, rows, after=after) is rows
        return
    with pytest.raises(LedgerGapError) as info:
        check_contiguous("r", seqs, rows, after=after, store="X store")
    err = info.value
    assert (err.missing_seq, err.found_seq, err.records, err.cursor) == (gap[0], gap[1], rows, seqs[-1])
    assert str(err).startswith(f"X store: ledger of run r is missing record seq {gap[0]} (found seq {gap[1]} ")
    assert ("as the first record" in str(err)) == (gap[0] == 1)
