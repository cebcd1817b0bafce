"""The 0.4.2 public surface, item by item (issue 15, part 3): what a host written for AbstractRuntime 0.4.2 imports
and observes, checked on real stores in temporary directories. Expected values were observed on the reference
(``abstractruntime==0.4.2``) through its public API; where we deliberately differ, docs/compatibility.md says so.
"""

from __future__ import annotations

import inspect
import os
import sqlite3
import threading
import time

import pytest


def _two_step_flow(effect, *, result_key=None, payload=None):
    from abstractruntime import Effect, StepPlan, WorkflowSpec

    def act(run, ctx):
        return StepPlan(node_id="act", effect=Effect(type=effect, payload=dict(payload or {"q": 1}),
                                                     result_key=result_key), next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"ok": True})

    return WorkflowSpec(workflow_id="flow", entry_node="act", nodes={"act": act, "done": done})


def _memory_runtime(**kw):
    from abstractruntime import Runtime
    from abstractruntime.storage import InMemoryLedgerStore, InMemoryRunStore

    return Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore(), **kw)


# --- the SQLite command inbox from abstractruntime.storage.sqlite ------------------------------------------------
def test_sqlite_command_inbox_imports_from_storage_sqlite(tmp_path):
    from abstractruntime.storage.sqlite import (
        CommandAppendResult,
        CommandRecord,
        SqliteCommandCursorStore,
        SqliteCommandStore,
        SqliteDatabase,
    )
    import abstractruntime
    from abstractruntime.storage import commands

    assert SqliteCommandStore is commands.SqliteCommandStore is abstractruntime.SqliteCommandStore
    assert SqliteCommandCursorStore is commands.SqliteCommandCursorStore
    assert list(inspect.signature(SqliteCommandStore).parameters) == ["db"]
    cursor_params = inspect.signature(SqliteCommandCursorStore).parameters
    assert list(cursor_params) == ["db", "consumer_id"]
    assert cursor_params["consumer_id"].kind is inspect.Parameter.KEYWORD_ONLY
    assert cursor_params["consumer_id"].default == "gateway_runner"

    db = SqliteDatabase(str(tmp_path / "inbox.db"))
    inbox = SqliteCommandStore(db)
    assert inbox.get_last_seq() == 0 and inbox.list_after(after=0) == ([], 0)
    first = inbox.append(CommandRecord(command_id="c1", run_id="r1", type="pause", payload={"a": 1},
                                       ts="2024-01-01T00:00:00+00:00", client_id="ui"))
    assert first == CommandAppendResult(accepted=True, duplicate=False, seq=1)
    assert inbox.append(CommandRecord(command_id="c1", run_id="r9", type="x", payload={}, ts="")) == \
        CommandAppendResult(accepted=False, duplicate=True, seq=1)
    blank = inbox.append(CommandRecord(command_id=" ", run_id="r1", type="resume", payload={}, ts=""))
    assert blank.accepted and blank.seq > 1
    records, cursor = inbox.list_after(after=0)
    assert [r.command_id for r in records][0] == "c1" and len(records[1].command_id) == 32 and records[1].ts
    assert records[0].to_json() == {"command_id": "c1", "run_id": "r1", "type": "pause", "payload": {"a": 1},
                                    "ts": "2024-01-01T00:00:00+00:00", "client_id": "ui", "seq": 1}
    assert cursor == blank.seq == inbox.get_last_seq()
    for bad, message in ((CommandRecord(command_id="c3", run_id=" ", type="t", payload={}, ts=""),
                          "CommandRecord.run_id must be non-empty"),
                         (CommandRecord(command_id="c3", run_id="r", type="", payload={}, ts=""),
                          "CommandRecord.type must be non-empty"),
                         (CommandRecord(command_id="c3", run_id="r", type="t", payload={"x": object()}, ts=""),
                          "CommandRecord.payload must be a JSON-serializable dict")):
        with pytest.raises(ValueError, match=message):
            inbox.append(bad)
    assert inbox.get_last_seq() == blank.seq  # nothing written

    runner = SqliteCommandCursorStore(db)
    assert runner.load() == 0
    runner.save(cursor)
    assert SqliteCommandCursorStore(db, consumer_id="worker").load() == 0
    # a blank consumer id is the default consumer and ids are stripped, as in the reference
    assert SqliteCommandCursorStore(db, consumer_id="").load() == cursor
    assert SqliteCommandCursorStore(db, consumer_id=" gateway_runner ").load() == cursor
    db.close()
    reopened = SqliteDatabase(str(tmp_path / "inbox.db"))
    assert SqliteCommandStore(reopened).get_last_seq() == cursor
    assert SqliteCommandCursorStore(reopened).load() == cursor
    reopened.close()


# --- abstractruntime.integrations.abstractcore.observability --------------------------------------------------------
def test_observability_bridge_emits_step_events_on_the_abstractcore_bus():
    pytest.importorskip("abstractcore")
    from abstractcore.events import EventType, GlobalEventBus

    from abstractruntime import EffectType
    from abstractruntime.integrations.abstractcore import observability
    from abstractruntime.integrations.abstractcore.observability import (
        attach_global_event_bus_bridge,
        emit_step_record,
    )
    import abstractruntime.integrations.abstractcore as package

    assert package.emit_step_record is emit_step_record and sorted(observability.__all__) == [
        "attach_global_event_bus_bridge", "emit_step_record"]
    params = inspect.signature(attach_global_event_bus_bridge).parameters
    assert [(n, p.kind, p.default) for n, p in params.items()] == [
        ("runtime", inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.empty),
        ("run_id", inspect.Parameter.KEYWORD_ONLY, None),
        ("source", inspect.Parameter.KEYWORD_ONLY, "abstractruntime")]
    assert inspect.signature(emit_step_record).parameters["source"].default == "abstractruntime"

    names = ("WORKFLOW_STEP_STARTED", "WORKFLOW_STEP_COMPLETED", "WORKFLOW_STEP_WAITING", "WORKFLOW_STEP_FAILED")
    seen = []
    handler = seen.append
    for name in names:
        GlobalEventBus.on(getattr(EventType, name), handler)
    try:
        record = {"run_id": "r", "node_id": "n", "step_id": "s", "status": "completed", "extra": 1}
        emit_step_record(record)
        emit_step_record({"status": "resume"})  # no event for other statuses
        emit_step_record({"status": "failed"}, source="host")
        assert [(e.type, e.source) for e in seen] == [(EventType.WORKFLOW_STEP_COMPLETED, "abstractruntime"),
                                                      (EventType.WORKFLOW_STEP_FAILED, "host")]
        assert seen[0].data == {"run_id": "r", "node_id": "n", "step_id": "s", "status": "completed",
                                "record": record}
        assert seen[1].data == {"run_id": None, "node_id": None, "step_id": None, "status": "failed",
                                "record": {"status": "failed"}}

        seen.clear()
        rt = _memory_runtime()
        flow = _two_step_flow(EffectType.ANSWER_USER, payload={"message": "hi"})
        run_id = rt.start(workflow=flow)
        stop = attach_global_event_bus_bridge(runtime=rt, run_id=run_id)
        rt.tick(workflow=flow, run_id=run_id)
        stop()
        rt.tick(workflow=flow, run_id=rt.start(workflow=flow))  # not forwarded any more
        ledger = rt.get_ledger(run_id)
        assert [e.data["record"] for e in seen] == ledger
        assert [(e.type, e.data["node_id"], e.data["step_id"]) for e in seen][:2] == [
            (EventType.WORKFLOW_STEP_STARTED, "act", ledger[0]["step_id"]),
            (EventType.WORKFLOW_STEP_COMPLETED, "act", ledger[0]["step_id"])]
    finally:
        for name in names:
            GlobalEventBus.off(getattr(EventType, name), handler)


# --- EvidenceRecorder.record_tool_calls returns its stats ------------------------------------------------------------
def test_evidence_recorder_returns_capture_stats():
    import attrs

    from abstractruntime import FileArtifactStore, InMemoryArtifactStore, RunState
    from abstractruntime.evidence import EvidenceCaptureStats, EvidenceRecorder
    from abstractruntime.evidence.recorder import EvidenceCaptureStats as FromRecorder

    assert FromRecorder is EvidenceCaptureStats and EvidenceCaptureStats() == EvidenceCaptureStats(recorded=0)
    store = InMemoryArtifactStore()
    run = RunState.new(workflow_id="wf", entry_node="a")
    calls = [{"name": "fetch_url", "arguments": {"url": "u"}, "call_id": "c1"}, {"name": "other", "arguments": {}},
             {"name": "web_search", "arguments": {"query": "q"}, "call_id": "c3"}]
    results = {"mode": "executed", "results": [
        {"call_id": "c1", "name": "fetch_url", "success": True, "output": {"raw_text": "abc", "normalized_text": "n"}},
        {"call_id": "c2", "name": "other", "success": True, "output": "x"},
        {"call_id": "c3", "name": "web_search", "success": False, "output": None, "error": "boom"}]}
    stats = EvidenceRecorder(artifact_store=store).record_tool_calls(run=run, node_id="n", tool_calls=calls,
                                                                    tool_results=results)
    assert isinstance(stats, EvidenceCaptureStats) and stats.recorded == 2 and repr(stats) == \
        "EvidenceCaptureStats(recorded=2)"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.recorded = 3
    assert [r.get("meta", {}).get("evidence_id") is not None for r in results["results"]] == [True, False, True]
    recorder = EvidenceRecorder(artifact_store=store)
    assert recorder.record_tool_calls(run=run, node_id="n", tool_calls=[], tool_results=None).recorded == 0
    assert recorder.record_tool_calls(run=run, node_id="n", tool_calls=calls, tool_results={"results": "x"}) == \
        EvidenceCaptureStats(recorded=0)
    assert EvidenceRecorder(artifact_store=store, tool_names=("other",)).record_tool_calls(
        run=run, node_id="n", tool_calls=calls, tool_results=results).recorded == 1
    assert FileArtifactStore  # the file store records the same way (covered in test_evidence.py)


# --- FileArtifactStore: delete, gc, id validation ----------------------------------------------------------------
def test_file_artifact_store_delete_gc_and_id_errors(tmp_path):
    from abstractruntime import FileArtifactStore
    from abstractruntime.storage.artifacts import validate_artifact_id

    store = FileArtifactStore(str(tmp_path))
    blobs = tmp_path / "artifacts" / "blobs"
    a = store.store(b"hello", run_id="r1")
    b = store.store(b"hello", run_id="r2")  # same blob, another reference
    other = store.store(b"other")
    assert a.blob_id == b.blob_id and a.artifact_id != b.artifact_id
    assert store.delete(a.artifact_id) is True and store.delete(a.artifact_id) is False
    assert not store.exists(a.artifact_id) and store.load(a.artifact_id) is None
    assert store.get_metadata(a.artifact_id) is None
    assert store.load(b.artifact_id).content == b"hello"  # the shared blob stays referenced
    assert store.gc(dry_run=False) == {"dry_run": False, "blobs_total": 2, "blobs_referenced": 2,
                                       "blobs_deleted": 0, "bytes_reclaimed": 0, "errors": []}
    assert store.delete(b.artifact_id)
    # gc removes what nothing references, at once (no grace period by default, as in the reference)
    assert store.gc() == {"dry_run": True, "blobs_total": 2, "blobs_referenced": 1, "blobs_deleted": 1,
                          "bytes_reclaimed": 5, "errors": []}
    assert (blobs / f"{a.blob_id}.bin").exists()  # a dry run deletes nothing
    assert store.gc(dry_run=False) == {"dry_run": False, "blobs_total": 2, "blobs_referenced": 1,
                                       "blobs_deleted": 1, "bytes_reclaimed": 5, "errors": []}
    assert sorted(os.listdir(blobs)) == [f"{other.blob_id}.bin"]
    assert store.gc(dry_run=False)["blobs_deleted"] == 0 and store.load(other.artifact_id).content == b"other"

    # id validation, worded as the reference words it
    for bad in ("", None):
        for call in (validate_artifact_id, store.load, store.exists, store.delete, store.get_metadata):
            with pytest.raises(ValueError, match="^artifact_id cannot be empty$"):
                call(bad)
    for bad in ("../x", "a/b", "a.b", " a", "a\n"):
        expected = f"Invalid artifact_id {bad!r}: must contain only alphanumeric characters, hyphens, and underscores"
        for call in (validate_artifact_id, store.load, store.exists, store.delete, store.get_metadata,
                     lambda i: store.store(b"x", artifact_id=i)):
            with pytest.raises(ValueError) as info:
                call(bad)
            assert str(info.value) == expected
    with pytest.raises(TypeError):
        store.load(5)
    assert not [n for n in os.listdir(tmp_path / "artifacts" / "refs") if not n.endswith(".meta")]


def test_file_artifact_gc_never_takes_the_blob_of_a_store_in_progress(tmp_path):
    from abstractruntime import FileArtifactStore

    writer, collector = FileArtifactStore(str(tmp_path), fsync=False), FileArtifactStore(str(tmp_path))
    stop = threading.Event()
    deleted = []

    def collect():
        while not stop.is_set():
            deleted.append(collector.gc(dry_run=False, grace_seconds=0)["blobs_deleted"])

    thread = threading.Thread(target=collect)
    thread.start()
    try:
        metas = [writer.store(f"content {i}".encode()) for i in range(150)]
    finally:
        stop.set()
        thread.join()
    assert len(deleted) > 1 and sum(deleted) == 0
    assert [writer.load(m.artifact_id).content for m in metas] == [f"content {i}".encode() for i in range(150)]


# --- WorkflowRegistry errors ---------------------------------------------------------------------------------------
def test_workflow_registry_errors_are_worded_as_the_reference():
    from abstractruntime import WorkflowRegistry, WorkflowSpec

    registry = WorkflowRegistry()
    registry.register(WorkflowSpec(workflow_id="w1", entry_node="a", nodes={}))
    with pytest.raises(KeyError) as info:
        registry.get_or_raise("nope")
    assert info.value.args == ("Workflow 'nope' is not registered. Register it with registry.register(workflow) "
                               "before starting the scheduler.",)
    with pytest.raises(ValueError) as dup:
        registry.register(WorkflowSpec(workflow_id="w1", entry_node="a", nodes={}))
    assert dup.value.args == ("Workflow 'w1' is already registered. Use unregister() first if you want to replace "
                              "it.",)
    with pytest.raises(KeyError) as gone:
        registry.unregister("zz")
    assert gone.value.args == ("Workflow 'zz' is not registered.",)
    assert registry.get_or_raise("w1").workflow_id == "w1"


# --- the SQLite ledger: count_many / metrics_many, duplicate seq -----------------------------------------------------
def test_sqlite_ledger_count_many_omits_unknown_runs_and_duplicate_seq_names_run_and_seq(tmp_path):
    from abstractruntime.core.models import StepRecord, StepStatus
    from abstractruntime.storage.sqlite import SqliteDatabase, SqliteLedgerStore

    path = str(tmp_path / "ledger.db")
    ledger = SqliteLedgerStore(SqliteDatabase(path))
    ledger.append(StepRecord(run_id="r1", step_id="s1", node_id="n", status=StepStatus.STARTED))
    ledger.append(StepRecord(run_id="r1", step_id="s1", node_id="n", status=StepStatus.COMPLETED,
                             effect={"type": "tool_calls", "payload": {"tool_calls": [{}, {}]}}))
    ledger.append(StepRecord(run_id="r2", step_id="s2", node_id="n", status=StepStatus.STARTED))
    assert ledger.count_many(["r2", "nope", "r1", "r2"]) == {"r2": 1, "r1": 2}
    assert list(ledger.count_many(["r2", "nope", "r1"])) == ["r2", "r1"] and ledger.count_many([]) == {}
    assert ledger.count("nope") == 0
    # metrics over completed rows; runs without any are omitted, as in the reference
    assert ledger.metrics_many(["r1", "r2", "nope"]) == {
        "r1": {"steps": 1, "llm_calls": 0, "tool_calls": 2, "tokens_total": 0}}

    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM ledger_heads WHERE run_id = 'r1'")  # the counter falls behind the ledger rows
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.IntegrityError) as info:  # the reference's exception type
        ledger.append(StepRecord(run_id="r1", step_id="s3", node_id="n", status=StepStatus.STARTED))
    error = info.value
    assert (error.run_id, error.seq) == ("r1", 1)
    assert "run_id='r1', seq=1" in str(error) and path in str(error) and "ledger_heads" in str(error)
    from abstractruntime.errors import StoreError

    assert isinstance(error, StoreError)
    assert [r["step_id"] for r in ledger.list("r1")] == ["s1", "s1"]  # nothing written


# --- history bundle export options ---------------------------------------------------------------------------------
def test_history_bundle_export_filters_input_data_and_tails_ledgers():
    from abstractruntime import EffectType, InMemoryArtifactStore, StepPlan, WorkflowSpec
    from abstractruntime.history_bundle import export_run_history_bundle

    rt = _memory_runtime()
    flow = _two_step_flow(EffectType.ANSWER_USER, payload={"message": "hi"})
    run_id = rt.start(workflow=flow, vars={"q": "hello", "_hidden": 1, "big": "y" * 300_000, "n": {"deep": 1}},
                      session_id="S")
    rt.tick(workflow=flow, run_id=run_id)
    total = len(rt.get_ledger(run_id))

    def export(**kw):
        return export_run_history_bundle(run_id=run_id, run_store=rt.run_store, ledger_store=rt.ledger_store, **kw)

    def cursors(bundle):
        return [it["cursor"] for it in bundle["ledgers"][run_id]["items"]]

    bundle = export()
    assert sorted(bundle["input_data"]) == ["big", "n", "q"]  # `_`-prefixed vars are not input data
    assert cursors(bundle) == list(range(1, total + 1))
    assert cursors(export(ledger_max_items=2)) == [total - 1, total]
    assert cursors(export(ledger_max_items="2")) == [total - 1, total]
    for mode in ("tail", "head", "", None):  # anything but "full" tails
        tail = export(ledger_mode=mode, ledger_max_items=1)
        assert cursors(tail) == [total] and tail["ledgers"][run_id]["cursor_start"] == total
        assert [t["cursor"] for t in tail["timeline"]] == [total]
    for kw in ({"ledger_mode": " FULL ", "ledger_max_items": 1}, {"ledger_max_items": 0}, {"ledger_max_items": -1}):
        assert cursors(export(**kw)) == list(range(1, total + 1))
    offloaded = export(artifact_store=InMemoryArtifactStore())
    assert list(offloaded["input_data"]["big"]) == ["$artifact"] and offloaded["input_data"]["n"] == {"deep": 1}

    def answer(run, ctx):
        return StepPlan(node_id="answer", complete_output={"answer": "a", "meta": {"m": 1}})

    chat = WorkflowSpec(workflow_id="chat", entry_node="answer", nodes={"answer": answer})
    last = rt.start(workflow=chat, vars={"prompt": "p"}, session_id="S")
    rt.tick(workflow=chat, run_id=last)
    turns = export_run_history_bundle(run_id=last, run_store=rt.run_store, ledger_store=rt.ledger_store,
                                      include_session=True)["session"]["turns"]
    assert [(t["kind"], t["answer_meta"]) for t in turns] == [("run", None), ("run", {"m": 1})]
    with pytest.raises(KeyError) as info:
        export_run_history_bundle(run_id="unknown", run_store=rt.run_store, ledger_store=rt.ledger_store)
    assert info.value.args == ("Run 'unknown' not found",)
    with pytest.raises(ValueError, match="run_id is required"):
        export_run_history_bundle(run_id=" ", run_store=rt.run_store, ledger_store=rt.ledger_store)


# --- node traces of effect steps -------------------------------------------------------------------------------------
def test_node_traces_have_one_entry_per_effect_step_with_the_final_outcome():
    from abstractruntime import DefaultEffectPolicy, EffectType, RunStatus
    from abstractruntime.core.runtime import EffectOutcome

    calls = []

    def flaky(run, effect, default_next_node):
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RuntimeError(f"flake{len(calls)}")
        return EffectOutcome.completed({"ok": len(calls)})

    def refuse(run, effect, default_next_node):
        return EffectOutcome.failed("nope")

    flow = _two_step_flow(EffectType.MEMORY_KG_QUERY, result_key="out")
    rt = _memory_runtime(effect_handlers={EffectType.MEMORY_KG_QUERY: flaky},
                         effect_policy=DefaultEffectPolicy(default_max_attempts=3, default_backoff_base=0.0))
    run_id = rt.start(workflow=flow)
    assert rt.tick(workflow=flow, run_id=run_id).status is RunStatus.COMPLETED
    steps = rt.get_node_trace(run_id, "act")["steps"]
    assert len(rt.get_ledger(run_id)) == 8  # three attempts of two rows, the completion, the status row
    assert [(s["status"], s.get("result"), s.get("error")) for s in steps] == [("completed", {"ok": 3}, None)]
    assert steps[0]["effect"] == {"type": "memory_kg_query", "payload": {"q": 1}, "result_key": "out"}
    assert steps[0]["duration_ms"] >= (calls[-1] - calls[0]) * 1000 - 1  # timed from the first attempt
    assert rt.get_node_trace(run_id, "done") == {"node_id": "done", "steps": []}

    for attempts in (1, 2):
        rt = _memory_runtime(effect_handlers={EffectType.MEMORY_KG_QUERY: refuse},
                             effect_policy=DefaultEffectPolicy(default_max_attempts=attempts, default_backoff_base=0))
        run_id = rt.start(workflow=flow)
        state = rt.tick(workflow=flow, run_id=run_id)
        assert state.status is RunStatus.FAILED
        traces = rt.get_node_traces(run_id)
        assert list(traces) == ["act"]
        assert [(s["status"], s["error"]) for s in traces["act"]["steps"]] == [("failed", state.error)]
        assert state.error.startswith(f"Effect failed after {attempts} attempt") and state.error.endswith(": nope")


# --- retry backoff sleeps through time.sleep, looked up at call time -------------------------------------------------
def test_retry_backoff_sleeps_through_time_sleep_patched_by_the_host(monkeypatch):
    from abstractruntime import (
        DefaultEffectPolicy,
        EffectType,
        RetryPolicy,
        RunStatus,
        create_scheduled_runtime,
    )

    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)  # after the runtime modules were imported

    def boom(run, effect, default_next_node):
        raise RuntimeError("down")

    flow = _two_step_flow(EffectType.LLM_CALL)
    # backoffs up to `inline_backoff_s` sleep inline, as 0.4.2 did for every backoff
    rt = _memory_runtime(effect_handlers={EffectType.LLM_CALL: boom}, effect_policy=RetryPolicy(),
                         settings={"inline_backoff_s": 60})
    state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
    assert state.status is RunStatus.FAILED and slept == [1.0, 2.0]  # LLM_CALL: 3 attempts, no sleep after the last

    # with the default (1 s), the 2 s backoff parks the run in a durable timer wait instead (a deliberate change)
    slept.clear()
    rt = _memory_runtime(effect_handlers={EffectType.LLM_CALL: boom}, effect_policy=RetryPolicy())
    state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
    assert state.status is RunStatus.WAITING and slept == [1.0]
    assert state.waiting.reason.value == "until" and state.waiting.details["kind"] == "retry"
    assert state.waiting.details["attempt"] == 3 and state.waiting.details["effect_type"] == "llm_call"

    slept.clear()
    policy = DefaultEffectPolicy(default_max_attempts=4, default_backoff_base=0.5, default_backoff_max=1.5)
    sr = create_scheduled_runtime(effect_handlers={EffectType.LLM_CALL: boom}, effect_policy=policy,
                                  auto_start=False, settings={"inline_backoff_s": 60})
    try:
        run_id, state = sr.run(flow)
        assert state.error.endswith("Effect handler raised exception: down") and slept == [0.5, 1.0, 1.5]
    finally:
        sr.stop()
