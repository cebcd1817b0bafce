"""The provenance plugin: hash-chained (optionally signed) ledgers on real stores, tampered on disk.

Every run goes through a real ``Runtime`` (ASK_USER, resume, a side-effecting effect whose reservation is its own
ledger-only commit, completion). The LMDB and SQLite files are then edited with the ``lmdb`` and ``sqlite3``
modules directly, and verification must name the first bad record.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
import sys
import threading
from functools import lru_cache
from typing import Any, Dict, List

import lmdb
import pytest

import abstractruntime_provenance
from abstractruntime import (
    Effect,
    EffectCall,
    EffectHandlerDescriptor,
    EffectOutcome,
    EffectType,
    Runtime,
    RunStatus,
    StepPlan,
    StepRecord,
    WorkflowSpec,
    hookimpl,
)
from abstractruntime.errors import ConfigurationError
from abstractruntime.storage.ledger_chain import HashChainedLedgerStore, compute_record_hash, verify_ledger_chain
from abstractruntime_inmemory.store import InMemoryLedgerStore, MemoryBackend
from abstractruntime_provenance import register_hasher

WORK = "provenance_test_work"


# --- helpers ------------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in ("ABSTRACTRUNTIME_SIGNING_KEY", "ABSTRACTRUNTIME_SIGNING_KEY_PASSWORD", "ABSTRACTRUNTIME_CONFIG",
                "ABSTRACTRUNTIME_STORE", "ABSTRACTRUNTIME_PLUGINS_ALLOW", "ABSTRACTRUNTIME_PLUGINS_BLOCK"):
        monkeypatch.delenv(key, raising=False)


@lru_cache(maxsize=1)
def _provenance_installed() -> bool:
    with Runtime.from_config({"store": "memory://"}) as rt:
        return "provenance" in {p.name for p in rt.plugins()}


class WorkPlugin:
    """A side-effecting effect handler: the kernel commits its ``started`` reservation on its own first."""

    __name__ = "provenance_test_work_plugin"

    def __init__(self) -> None:
        self.seen_reservations: List[Dict[str, Any]] = []

    def handle(self, call: EffectCall) -> EffectOutcome:
        rows = call.runtime.get_ledger(call.run.run_id)
        self.seen_reservations.append(rows[-1])
        return EffectOutcome.completed({"worked": call.effect.payload.get("n")})

    @hookimpl
    def abstractruntime_register_effect_handlers(self):
        return [EffectHandlerDescriptor(WORK, self.handle, side_effects=True)]


def plugins(*extra: Any) -> List[Any]:
    own = [] if _provenance_installed() else [abstractruntime_provenance]
    return own + list(extra)


def make_runtime(store: str, work: WorkPlugin = None, **options: Any) -> Runtime:
    config: Dict[str, Any] = {"store": store}
    if options:
        config["plugin_options"] = {"provenance": options}
    return Runtime.from_config(config, plugins=plugins(work or WorkPlugin()))


def workflow() -> WorkflowSpec:
    return WorkflowSpec(workflow_id="prov", entry_node="ask", nodes={
        "ask": lambda run, ctx: StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "name?"},
                                                                       "answer"), next_node="work"),
        "work": lambda run, ctx: StepPlan(node_id="work", effect=Effect(WORK, {"n": 1}, "worked"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"answer": run.vars.get("answer")}),
    })


def drive(rt: Runtime) -> str:
    """ASK_USER, resume, a reserved side effect, completion. Returns the run id (7 ledger records)."""
    wf = workflow()
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.WAITING
    state = rt.resume(workflow=wf, run_id=run_id, wait_key=state.waiting.wait_key, payload={"text": "Zoë ✓"})
    assert state.status is RunStatus.COMPLETED
    return run_id


def store_url(kind: str, tmp_path) -> str:
    return {"memory": "memory://", "lmdb": f"lmdb://{tmp_path}/lmdb?sync=false",
            "sqlite": f"sqlite://{tmp_path}/runs.db"}[kind]


def error_types(report: Dict[str, Any]) -> List[tuple]:
    return [(e["index"], e["type"]) for e in report["errors"]]


def ed25519_key(tmp_path, name: str = "ledger"):
    ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    from cryptography.hazmat.primitives import serialization

    key = ed25519.Ed25519PrivateKey.generate()
    private = tmp_path / f"{name}.pem"
    public = tmp_path / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, private, public


# --- tampering with the files on disk -----------------------------------------------------------------------------
class LmdbFiles:
    """Ledger rows of one run as stored by the LMDB plugin: ``d:<run_id>\\x01<u64 seq>`` -> record JSON."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def _prefix(self, run_id: str) -> bytes:
        return b"d:" + run_id.encode("utf-8") + b"\x01"

    def rows(self, run_id: str) -> List[Dict[str, Any]]:
        env = lmdb.open(self.path, subdir=True)
        try:
            prefix = self._prefix(run_id)
            with env.begin() as txn:
                cur = txn.cursor()
                cur.set_range(prefix)
                return [json.loads(v) for k, v in cur if k.startswith(prefix) and len(k) == len(prefix) + 8]
        finally:
            env.close()

    def rewrite(self, run_id: str, rows: List[Dict[str, Any]]) -> None:
        env = lmdb.open(self.path, subdir=True)
        try:
            prefix = self._prefix(run_id)
            with env.begin(write=True) as txn:
                cur = txn.cursor()
                cur.set_range(prefix)
                old = [k for k, _ in cur if k.startswith(prefix) and len(k) == len(prefix) + 8]
                for k in old:
                    txn.delete(k)
                for seq, row in enumerate(rows, start=1):
                    txn.put(prefix + struct.pack(">Q", seq), json.dumps(row).encode("utf-8"))
        finally:
            env.close()


class SqliteFiles:
    """Ledger rows of one run as stored by the SQLite plugin: table ``ledger`` (run_id, seq, ..., data JSON) and
    ``ledger_heads`` (run_id, last_seq)."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def rows(self, run_id: str) -> List[Dict[str, Any]]:
        with sqlite3.connect(self.path) as conn:
            return [json.loads(d) for (d,) in conn.execute(
                "SELECT data FROM ledger WHERE run_id = ? ORDER BY seq", (run_id,))]

    def rewrite(self, run_id: str, rows: List[Dict[str, Any]]) -> None:
        conn = sqlite3.connect(self.path)
        try:
            with conn:
                conn.execute("DELETE FROM ledger WHERE run_id = ?", (run_id,))
                conn.executemany(
                    "INSERT INTO ledger (run_id, seq, status, idempotency_key, effect_type, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(run_id, seq, r["status"], r.get("idempotency_key"), (r.get("effect") or {}).get("type"),
                      json.dumps(r)) for seq, r in enumerate(rows, start=1)])
                conn.execute("UPDATE ledger_heads SET last_seq = ? WHERE run_id = ?", (len(rows), run_id))
        finally:
            conn.close()


def files_for(kind: str, tmp_path):
    return LmdbFiles(tmp_path / "lmdb") if kind == "lmdb" else SqliteFiles(tmp_path / "runs.db")


def change_field(rows: List[Dict[str, Any]], i: int) -> None:
    rows[i]["result"] = {"tampered": True}


def forge(rows: List[Dict[str, Any]], i: int) -> None:
    """Change a field and recompute the record's own hash (the forger cannot sign without the key)."""
    change_field(rows, i)
    rows[i]["record_hash"] = compute_record_hash(record=rows[i], prev_hash=rows[i]["prev_hash"])


def swap(rows: List[Dict[str, Any]], i: int) -> None:
    rows[i], rows[i + 1] = rows[i + 1], rows[i]


def delete(rows: List[Dict[str, Any]], i: int) -> None:
    del rows[i]


def recorded(kind: str, tmp_path, **options: Any):
    """Drive a run on ``kind``, close the runtime; return (run_id, files, rows as stored)."""
    with make_runtime(store_url(kind, tmp_path), **options) as rt:
        run_id = drive(rt)
        report = rt.verify_ledger(run_id)
        assert report["ok"], report
        assert report["count"] == 7
    files = files_for(kind, tmp_path)
    rows = files.rows(run_id)
    assert len(rows) == 7
    return run_id, files, rows


def reverify(kind: str, tmp_path, run_id: str, **verify_kw: Any) -> Dict[str, Any]:
    with make_runtime(store_url(kind, tmp_path)) as rt:
        return rt.verify_ledger(run_id, **verify_kw)


# --- chains through a real runtime --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["memory", "lmdb", "sqlite"])
def test_runtime_ledger_is_chained_and_verifies(kind, tmp_path):
    work = WorkPlugin()
    with make_runtime(store_url(kind, tmp_path), work) as rt:
        run_id = drive(rt)
        rows = rt.get_ledger(run_id)
        report = rt.verify_ledger(run_id)
    assert [r["status"] for r in rows] == ["started", "waiting", "completed", "started", "completed", "completed",
                                           "completed"]
    assert rows[0]["prev_hash"] is None
    for prev, row in zip(rows, rows[1:]):
        assert row["prev_hash"] == prev["record_hash"]
    for row in rows:
        assert len(row["record_hash"]) == 64 and int(row["record_hash"], 16) >= 0  # bare SHA-256 hex
        assert row["record_hash"] == compute_record_hash(record=row, prev_hash=row["prev_hash"])
        assert row["signature"] is None
    assert report == {"run_id": run_id, "ok": True, "count": 7, "errors": [], "first_bad_index": None,
                      "head_hash": rows[-1]["record_hash"], "computed_head_hash": rows[-1]["record_hash"]}
    assert verify_ledger_chain(rows) == {k: v for k, v in report.items() if k != "run_id"}


def test_reservation_commits_are_chained(tmp_path):
    work = WorkPlugin()
    with make_runtime(store_url("sqlite", tmp_path), work) as rt:
        run_id = drive(rt)
        rows = rt.get_ledger(run_id)
    # While the handler ran, its reservation was already committed (ledger-only commit) and chained.
    (reservation,) = work.seen_reservations
    assert reservation["status"] == "started" and reservation["node_id"] == "work"
    assert reservation["record_hash"] == rows[3]["record_hash"]
    assert reservation["prev_hash"] == rows[2]["record_hash"]
    # The completion row copies the reservation's fields but gets its own link and hash.
    assert rows[4]["step_id"] == rows[3]["step_id"] and rows[4]["prev_hash"] == rows[3]["record_hash"]
    assert rows[4]["record_hash"] != rows[3]["record_hash"]


def test_chain_continues_across_runtimes_and_is_per_run(tmp_path):
    """The head comes from the store, not from a process cache: a run resumed by another runtime (process)
    continues the same chain."""
    url = store_url("lmdb", tmp_path)
    wf = workflow()
    with make_runtime(url) as rt:
        run_id = rt.start(workflow=wf)
        waiting = rt.tick(workflow=wf, run_id=run_id)
        other = drive(rt)
        head = rt.get_ledger(run_id)[-1]["record_hash"]
    with make_runtime(url) as rt:
        rt.resume(workflow=wf, run_id=run_id, wait_key=waiting.waiting.wait_key, payload={"text": "later"})
        rows = rt.get_ledger(run_id)
        assert rows[2]["prev_hash"] == head
        assert rt.verify_ledger(run_id)["ok"] and rt.verify_ledger(other)["ok"]
        assert rt.get_ledger(other)[0]["prev_hash"] is None  # each run has its own chain


def test_concurrent_runs_chain_independently():
    backend = MemoryBackend()
    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store, plugins=plugins(WorkPlugin()))
    ids: List[str] = []
    errors: List[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                ids.append(drive(rt))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(ids) == 30
    assert all(rt.verify_ledger(i)["ok"] for i in ids)


# --- tampering on disk --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lmdb", "sqlite"])
def test_changed_field_is_pinpointed(kind, tmp_path):
    run_id, files, rows = recorded(kind, tmp_path)
    change_field(rows, 2)
    files.rewrite(run_id, rows)
    report = reverify(kind, tmp_path, run_id)
    assert not report["ok"] and report["first_bad_index"] == 2
    assert error_types(report) == [(2, "record_hash_mismatch")]
    assert report["errors"][0]["stored"] == rows[2]["record_hash"]
    assert report["errors"][0]["computed"] == compute_record_hash(record=rows[2], prev_hash=rows[2]["prev_hash"])


@pytest.mark.parametrize("kind", ["lmdb", "sqlite"])
def test_swapped_records_are_pinpointed(kind, tmp_path):
    run_id, files, rows = recorded(kind, tmp_path)
    original = [r["record_hash"] for r in rows]
    swap(rows, 1)
    files.rewrite(run_id, rows)
    report = reverify(kind, tmp_path, run_id)
    assert report["first_bad_index"] == 1
    assert error_types(report) == [(1, "prev_hash_mismatch"), (2, "prev_hash_mismatch"), (3, "prev_hash_mismatch")]
    assert report["errors"][0]["expected_prev_hash"] == original[0]
    assert report["errors"][0]["actual_prev_hash"] == original[1]


@pytest.mark.parametrize("kind", ["lmdb", "sqlite"])
def test_deleted_record_is_pinpointed(kind, tmp_path):
    run_id, files, rows = recorded(kind, tmp_path)
    delete(rows, 1)
    files.rewrite(run_id, rows)
    report = reverify(kind, tmp_path, run_id)
    assert report["count"] == 6
    assert error_types(report) == [(1, "prev_hash_mismatch")]
    assert report["first_bad_index"] == 1


@pytest.mark.parametrize("kind", ["lmdb", "sqlite"])
def test_forged_record_breaks_the_next_link(kind, tmp_path):
    run_id, files, rows = recorded(kind, tmp_path)
    forge(rows, 2)
    files.rewrite(run_id, rows)
    report = reverify(kind, tmp_path, run_id)
    assert error_types(report) == [(3, "prev_hash_mismatch")]
    assert report["first_bad_index"] == 3


@pytest.mark.parametrize("kind", ["lmdb", "sqlite"])
def test_forged_record_with_signing_is_pinpointed_at_the_forgery(kind, tmp_path):
    _key, private, public = ed25519_key(tmp_path)
    run_id, files, rows = recorded(kind, tmp_path, signing_key_path=str(private))
    assert all(r["signature"] for r in rows)
    assert reverify(kind, tmp_path, run_id, public_key=str(public))["ok"]
    forge(rows, 2)
    files.rewrite(run_id, rows)
    report = reverify(kind, tmp_path, run_id, public_key=str(public))
    assert error_types(report) == [(2, "bad_signature"), (3, "prev_hash_mismatch")]
    assert report["first_bad_index"] == 2


@pytest.mark.parametrize("kind", ["lmdb", "sqlite"])
def test_first_record_tampered_reports_index_zero(kind, tmp_path):
    run_id, files, rows = recorded(kind, tmp_path)
    change_field(rows, 0)
    files.rewrite(run_id, rows)
    report = reverify(kind, tmp_path, run_id)
    assert report["first_bad_index"] == 0  # not None: reference defect §17 #8
    assert error_types(report) == [(0, "record_hash_mismatch")]


def test_memory_store_tampering_is_detected():
    backend = MemoryBackend()
    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store, plugins=plugins(WorkPlugin()))
    run_id = drive(rt)
    stored = backend._ledger[run_id]
    row = json.loads(stored[4])
    row["result"] = {"worked": 999}
    stored[4] = json.dumps(row).encode("utf-8")
    report = rt.verify_ledger(run_id)
    assert error_types(report) == [(4, "record_hash_mismatch")]


def test_rewritten_chain_passes_without_signatures_but_not_with_them(tmp_path):
    """The threat model: without signatures a forger who rehashes every later record goes unnoticed (only an
    anchored head hash shows it); with signatures every rewritten record fails."""
    _key, private, public = ed25519_key(tmp_path)
    run_id, files, rows = recorded("sqlite", tmp_path, signing_key_path=str(private))
    head_before = rows[-1]["record_hash"]
    change_field(rows, 2)
    prev = rows[1]["record_hash"]
    for row in rows[2:]:
        row["prev_hash"] = prev
        row["record_hash"] = prev = compute_record_hash(record=row, prev_hash=prev)
    files.rewrite(run_id, rows)
    unsigned = reverify("sqlite", tmp_path, run_id)
    assert unsigned["ok"] and unsigned["head_hash"] != head_before
    signed = reverify("sqlite", tmp_path, run_id, public_key=str(public))
    assert signed["first_bad_index"] == 2
    assert error_types(signed) == [(i, "bad_signature") for i in range(2, 7)]


# --- verify_ledger_chain on plain dicts ---------------------------------------------------------------------------
def _chain(n: int, **kw: Any) -> List[Dict[str, Any]]:
    rows, prev = [], None
    for i in range(n):
        row = {"run_id": "r", "step_id": str(i), "node_id": "n", "status": "completed", "result": {"i": i},
               "prev_hash": prev, "signature": None}
        row["record_hash"] = prev = compute_record_hash(record=row, prev_hash=prev, **kw)
        rows.append(row)
    return rows


def test_verify_ledger_chain_report_shape_and_errors():
    assert verify_ledger_chain([]) == {"ok": True, "count": 0, "errors": [], "first_bad_index": None,
                                       "head_hash": None, "computed_head_hash": None}
    rows = _chain(4)
    assert verify_ledger_chain(rows)["ok"]
    broken = [dict(r) for r in rows]
    broken[0]["prev_hash"] = "f" * 64
    report = verify_ledger_chain(broken)
    assert report["first_bad_index"] == 0
    assert error_types(report) == [(0, "prev_hash_mismatch"), (0, "record_hash_mismatch")]
    assert report["errors"][0] == {"index": 0, "type": "prev_hash_mismatch", "expected_prev_hash": None,
                                   "actual_prev_hash": "f" * 64}
    missing = [dict(r) for r in rows]
    missing[2]["record_hash"] = None
    report = verify_ledger_chain(missing)
    assert error_types(report) == [(2, "missing_record_hash")]  # the walk stops there
    assert report["count"] == 4 and report["head_hash"] == rows[3]["record_hash"]
    assert report["computed_head_hash"] == rows[1]["record_hash"]


def test_compute_record_hash_matches_the_reference_definition():
    record = {"b": "é", "a": [1, 2.5, None], "record_hash": "x", "signature": "y", "prev_hash": "ignored"}
    canonical = json.dumps({"a": [1, 2.5, None], "b": "é", "prev_hash": "p"}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    assert compute_record_hash(record=record, prev_hash="p") == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert record["record_hash"] == "x"  # the input is not modified


# --- hash algorithms ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["sha512", "blake2b", "sha3_256"])
def test_hash_algorithm_option_round_trips(algorithm, tmp_path):
    run_id, files, rows = recorded("sqlite", tmp_path, algorithm=algorithm)
    digest_size = hashlib.new(algorithm).digest_size
    for row in rows:
        alg, _, digest = row["record_hash"].partition(":")
        assert alg == algorithm and len(digest) == 2 * digest_size
    change_field(rows, 5)
    files.rewrite(run_id, rows)
    assert error_types(reverify("sqlite", tmp_path, run_id)) == [(5, "record_hash_mismatch")]


def test_registered_hasher(tmp_path):
    register_hasher("test-sha3", hashlib.sha3_384)
    with make_runtime("memory://", algorithm="test-sha3") as rt:
        run_id = drive(rt)
        rows = rt.get_ledger(run_id)
        assert all(r["record_hash"].startswith("test-sha3:") for r in rows)
        assert rt.verify_ledger(run_id)["ok"]
    with pytest.raises(ConfigurationError):
        register_hasher("sha256", hashlib.sha512)


@pytest.mark.parametrize("options, match", [
    ({"algorithm": "no-such-hash"}, "Unknown hash algorithm"),
    ({"algorithm": "shake_128"}, "hexdigest"),
    ({"algorthm": "sha512"}, "Unknown option.*'algorthm' in plugin_options.provenance; valid options: algorithm, "),
    ({"signing_key_path": "/nonexistent/ledger.pem"}, "Cannot read the signing key"),
])
def test_bad_configuration_refuses_the_runtime_when_it_is_built(options, match, tmp_path):
    with pytest.raises(ConfigurationError, match=match):  # abstractruntime_runtime_created: before any write
        make_runtime(store_url("lmdb", tmp_path), **options)
    with make_runtime(store_url("lmdb", tmp_path)) as rt:  # the refused runtime closed its store; nothing written
        assert rt.run_store.list_runs() == []


# --- signatures ---------------------------------------------------------------------------------------------------
def test_signatures_from_option_and_verification_keys(tmp_path):
    key, private, public = ed25519_key(tmp_path)
    _other, _other_private, other_public = ed25519_key(tmp_path, "other")
    with make_runtime(store_url("lmdb", tmp_path), signing_key_path=str(private)) as rt:
        run_id = drive(rt)
        rows = rt.get_ledger(run_id)
        assert rt.verify_ledger(run_id)["ok"]  # no key: signatures are not checked
        for source in (str(public), public, public.read_bytes(), key.public_key(), key, str(private)):
            assert rt.verify_ledger(run_id, public_key=source)["ok"]
        wrong = rt.verify_ledger(run_id, public_key=str(other_public))
    assert error_types(wrong) == [(i, "bad_signature") for i in range(7)]
    import base64

    for row in rows:  # each signature is Ed25519 over the record hash
        key.public_key().verify(base64.b64decode(row["signature"]), row["record_hash"].encode("utf-8"))


def test_signing_key_from_environment_and_public_key_option(tmp_path, monkeypatch):
    _key, private, public = ed25519_key(tmp_path)
    monkeypatch.setenv("ABSTRACTRUNTIME_SIGNING_KEY", str(private))
    with make_runtime("memory://", public_key_path=str(public)) as rt:
        run_id = drive(rt)
        rows = rt.get_ledger(run_id)
        assert all(r["signature"] for r in rows)
        assert rt.verify_ledger(run_id)["ok"]  # checked against public_key_path
    # An empty signing_key_path turns signing off even when the variable is set.
    with make_runtime("memory://", signing_key_path="", public_key_path=str(public)) as rt:
        run_id = drive(rt)
        report = rt.verify_ledger(run_id)
    assert error_types(report) == [(i, "missing_signature") for i in range(7)]


def test_signature_checks_on_plain_dicts(tmp_path):
    key, _private, public = ed25519_key(tmp_path)
    import base64

    rows = _chain(3)
    for row in rows:
        row["signature"] = base64.b64encode(key.sign(row["record_hash"].encode())).decode()
    assert verify_ledger_chain(rows, public_key=str(public))["ok"]
    rows[1]["signature"] = "not base64!"
    rows[2]["signature"] = None
    report = verify_ledger_chain(rows, public_key=public.read_bytes())
    assert error_types(report) == [(1, "bad_signature"), (2, "missing_signature")]


def test_non_ed25519_signing_key_is_refused(tmp_path):
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = tmp_path / "ec.pem"
    pem.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ConfigurationError, match="Ed25519"):
        make_runtime("memory://", signing_key_path=str(pem))


def test_missing_cryptography_with_a_key_is_a_clear_configuration_error(tmp_path, monkeypatch):
    private = tmp_path / "key.pem"  # never parsed: the import fails first
    private.write_text("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n")
    monkeypatch.setitem(sys.modules, "cryptography.exceptions", None)  # as if the package were not installed
    with pytest.raises(ConfigurationError, match=r"abstractruntime\[signing\]"):
        make_runtime("memory://", signing_key_path=str(private))


# --- HashChainedLedgerStore ---------------------------------------------------------------------------------------
def _record(run_id: str, i: int) -> StepRecord:
    return StepRecord(run_id=run_id, step_id=f"s{i}", node_id="n", status="completed", result={"i": i})


def test_decorator_chains_appends_from_many_threads():
    inner = InMemoryLedgerStore()
    store = HashChainedLedgerStore(inner)

    def worker(run_id: str, base: int) -> None:
        for i in range(50):
            store.append(_record(run_id, base + i))

    threads = [threading.Thread(target=worker, args=(f"run-{t % 2}", t * 100)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for run_id in ("run-0", "run-1"):
        report = verify_ledger_chain(store.list(run_id))
        assert report["ok"] and report["count"] == 200
        assert store.head(run_id) == report["head_hash"]


def test_decorator_resumes_from_the_inner_store_and_forwards():
    inner = InMemoryLedgerStore()
    first = HashChainedLedgerStore(inner)
    second = HashChainedLedgerStore(inner)  # e.g. another process on the same store
    first.append(_record("r", 0))
    second.append(_record("r", 1))
    first.append(_record("r", 2))  # sees second's append through count()
    rows = first.list("r")
    assert verify_ledger_chain(rows)["ok"] and len(rows) == 3
    assert first.count("r") == 3
    assert first.list_after(run_id="r", after=2, limit=5)[0] == rows[2:]
    rec = _record("r", 3)
    rec.idempotency_key = "k"
    first.append(rec)
    assert first.find_by_idempotency_key("r", "k")["step_id"] == "s3"
    assert not hasattr(first, "backend")  # a runtime must not bypass append
    with pytest.raises(AttributeError):
        first.no_such_method  # noqa: B018


def test_decorator_with_algorithm_and_signing_key(tmp_path):
    key, private, public = ed25519_key(tmp_path)
    store = HashChainedLedgerStore(InMemoryLedgerStore(), algorithm="sha512", signing_key=str(private))
    for i in range(3):
        store.append(_record("r", i))
    rows = store.list("r")
    assert all(r["record_hash"].startswith("sha512:") and r["signature"] for r in rows)
    assert verify_ledger_chain(rows, public_key=key.public_key())["ok"]


def test_decorator_under_a_runtime_with_the_plugin(tmp_path):
    """Wrapping a runtime's ledger as well as loading the plugin still gives one valid (signed) chain."""
    _key, private, public = ed25519_key(tmp_path)
    backend = MemoryBackend()
    ledger = HashChainedLedgerStore(backend.ledger_store)
    rt = Runtime(run_store=backend.run_store, ledger_store=ledger, plugins=plugins(WorkPlugin()),
                 settings={"plugin_options": {"provenance": {"signing_key_path": str(private)}}})
    run_id = drive(rt)
    assert rt.verify_ledger(run_id, public_key=str(public))["ok"]


class _Crash(BaseException):
    """Escapes the kernel's ``except Exception``: the process 'dies' between reservation and outcome."""


def test_crash_between_reservation_and_outcome_keeps_one_chain(tmp_path):
    calls: List[int] = []

    class Crashy(WorkPlugin):
        def handle(self, call: EffectCall) -> EffectOutcome:
            calls.append(1)
            if len(calls) == 1:
                raise _Crash()
            return EffectOutcome.completed({"worked": True})

    url = store_url("lmdb", tmp_path)
    wf = workflow()
    with make_runtime(url, Crashy()) as rt:
        run_id = rt.start(workflow=wf)
        waiting = rt.tick(workflow=wf, run_id=run_id)
        with pytest.raises(_Crash):
            rt.resume(workflow=wf, run_id=run_id, wait_key=waiting.waiting.wait_key, payload={"text": "x"})
    with make_runtime(url, Crashy()) as rt:  # "restart": the in-doubt reservation is re-run, not re-recorded
        assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.COMPLETED
        rows = rt.get_ledger(run_id)
        assert [r["status"] for r in rows].count("started") == 2  # ask + one reservation for work
        assert rt.verify_ledger(run_id)["ok"]


def test_fast_canonical_json_is_byte_identical_to_the_reference_form():
    import json
    import random

    from abstractruntime_provenance.hashing import canonical_json

    rng = random.Random(7)
    alphabet = [chr(i) for i in range(0, 0x80)] + ["é", "☃", "\u2028", "\U0001F600", "\ufeff"]

    def s():
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))

    def v(depth=0):
        r = rng.random()
        if depth > 3 or r < 0.4:
            return rng.choice([s(), rng.randint(-2**63, 2**64 - 1), True, None, rng.random() * 10**rng.randint(-20, 20)])
        if r < 0.7:
            return {s(): v(depth + 1) for _ in range(rng.randint(0, 4))}
        return [v(depth + 1) for _ in range(rng.randint(0, 4))]

    for _ in range(3000):
        data = {s(): v() for _ in range(4)}
        assert canonical_json(data) == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_chaining_can_be_switched_off_by_configuration():
    from abstractruntime import Effect, EffectType, Runtime, StepPlan, WorkflowSpec

    flow = WorkflowSpec(workflow_id="off", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect(EffectType.ANSWER_USER, {"message": "x"}),
                                       next_node="b"),
        "b": lambda run, ctx: StepPlan(node_id="b", complete_output={}),
    })
    rt = Runtime.from_config({"store": "memory://", "plugin_options": {"provenance": {"enabled": False}}})
    run_id = rt.start(workflow=flow)
    rt.tick(workflow=flow, run_id=run_id)
    assert all(r["record_hash"] is None for r in rt.get_ledger(run_id))


@pytest.mark.parametrize("kind", ["memory", "lmdb", "sqlite"])
def test_a_writer_with_a_stale_chain_head_is_refused_and_retries_so_the_chain_never_forks(kind, tmp_path):
    """Two writers on one store: B's cancel computed its hashes, then A appended to the run before B's commit.
    The store refuses B's commit (LedgerHeadMovedError), cancel_run retries on the new head, the chain verifies."""
    class Interleave:
        __name__ = "interleave"

        def __init__(self) -> None:
            self.other: Any = None
            self.fired = 0

        @hookimpl
        def abstractruntime_fault_point(self, point: str, run_id: str) -> None:
            if point == "commit:before" and self.other is not None and self.fired == 0:
                self.fired += 1
                rec = StepRecord.start(run=self.other.get_state(run_id), node_id="elsewhere", effect=None)
                self.other.commit(None, [rec.finish_success({"x": 1})], run_id=run_id)

    a = Runtime.from_config({"store": store_url(kind, tmp_path)})
    backend = a.run_store.backend
    interleave = Interleave()
    b = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store, plugins=[interleave])
    wf = WorkflowSpec(workflow_id="ask", entry_node="ask", nodes={
        "ask": lambda run, ctx: StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}, "a"),
                                         next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={}),
    })
    run_id = a.start(workflow=wf)
    assert a.tick(workflow=wf, run_id=run_id).status is RunStatus.WAITING
    interleave.other = a
    assert b.cancel_run(run_id).status is RunStatus.CANCELLED
    assert interleave.fired == 1
    rows = a.get_ledger(run_id)
    nodes = [r["node_id"] for r in rows]
    assert nodes.index("elsewhere") < len(nodes) - 1 and rows[-1]["result"]["payload"]["text"] == "cancelled"
    report = a.verify_ledger(run_id)
    assert report["ok"], report["errors"]
    assert all(rows[i]["prev_hash"] == rows[i - 1]["record_hash"] for i in range(1, len(rows)))
    a.close()
