"""Integration-surface §10, lines 35-58: TOOL_CALLS execution, executors, workspace helpers, session attachments.

Real parts only: the plugin's runtime with in-memory stores and an in-memory artifact store, AbstractCore's own
``read_file``, a loopback MCP server (stdlib HTTP), real files in tmp dirs."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import abstractruntime_abstractcore as plugin
from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WaitReason, WorkflowSpec
from abstractruntime.integrations.abstractcore.session_attachments import (
    dedup_messages_view,
    execute_open_attachment,
    list_session_attachments,
    session_memory_owner_run_id,
)
from abstractruntime.integrations.abstractcore.tool_executor import (
    DelegatingMcpToolExecutor,
    MappingToolExecutor,
    McpToolExecutor,
)
from abstractruntime.integrations.abstractcore.workspace_scoped_tools import (
    WorkspaceScope,
    resolve_user_path,
    rewrite_tool_arguments,
)
from abstractruntime_abstractcore import attach
from abstractruntime_artifacts import InMemoryArtifactStore
from abstractruntime_inmemory.store import MemoryBackend

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def tools_flow(calls, *, allowed=None):
    payload = {"tool_calls": calls}
    if allowed is not None:
        payload["allowed_tools"] = allowed
    return WorkflowSpec(workflow_id="tools", entry_node="call", nodes={
        "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(EffectType.TOOL_CALLS, payload, "res"),
                                          next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"res": run.vars.get("res")}),
    })


class Env:
    def __init__(self, tools, calls, *, allowed=None, session_id="s1"):
        self.backend = MemoryBackend()
        self.store = InMemoryArtifactStore()
        self.rt = Runtime(run_store=self.backend.run_store, ledger_store=self.backend.ledger_store,
                          artifact_store=self.store, plugins=[plugin])
        attach(self.rt, tools=tools)
        self.flow = tools_flow(calls, allowed=allowed)
        self.run_id = self.rt.start(workflow=self.flow, session_id=session_id)

    def attachment(self, content, *, path, content_type="text/plain", session_id="s1"):
        tags = {"kind": "attachment", "path": path, "filename": Path(path).name, "session_id": session_id,
                "sha256": hashlib.sha256(content).hexdigest()}
        return self.store.store(content, content_type=content_type, tags=tags,
                                run_id=session_memory_owner_run_id(session_id)).artifact_id

    def tick(self):
        return self.rt.tick(workflow=self.flow, run_id=self.run_id)


class Recording:
    """A host executor without the plugin's ``executes`` marker: what the runtime learns by probing."""

    def __init__(self, later_mode="executed"):
        self.batches = []
        self.later_mode = later_mode

    def execute(self, *, tool_calls):
        self.batches.append([c["name"] for c in tool_calls])
        mode = "executed" if not tool_calls else self.later_mode
        return {"mode": mode, "results": [{"call_id": c["call_id"], "success": True, "output": c["name"].upper()}
                                          for c in tool_calls]}


def test_checklist_35_executor_probe_with_empty_batch():
    ex = Recording()
    env = Env(ex, [{"name": "a"}, {"name": "b"}])
    state = env.tick()
    assert state.status is RunStatus.COMPLETED, state.error
    assert ex.batches[0] == [] and [n for b in ex.batches[1:] for n in b] == ["a", "b"]
    assert [r["output"] for r in state.output["res"]["results"]] == ["A", "B"]


def test_checklist_36_invalid_and_disallowed_calls():
    env = Env(plugin.PassthroughToolExecutor(), ["oops", {"name": "secret", "arguments": {"pw": "hunter2"}},
                                                  {"name": "ok", "arguments": {"q": 1}}], allowed=["ok"])
    details = env.tick().waiting.details
    assert details["blocked_by_index"]["0"]["error"] == "Invalid tool call (expected an object)"
    assert details["blocked_by_index"]["1"]["error"] == "Tool 'secret' is not allowed for this node"
    evidence = details["tool_calls_for_evidence"]
    assert len(evidence) == 3 and evidence[1]["name"] == "secret" and evidence[1]["arguments"] == {}
    assert "hunter2" not in json.dumps(details)


def test_checklist_37_open_attachment_is_runtime_owned_and_queues_media():
    ex = Recording()
    calls = []
    env = Env(ex, calls)
    aid = env.attachment(PNG, path="img/chart.png", content_type="image/png")
    calls += [{"name": "open_attachment", "arguments": {"artifact_id": aid}}]
    state = env.tick()
    assert state.status is RunStatus.COMPLETED, state.error
    assert ex.batches == []  # never sent to (nor probed on) the executor
    (result,) = state.output["res"]["results"]
    assert result["success"] and result["output"]["media"][0]["$artifact"] == aid
    assert state.vars["_runtime"]["pending_media"] == result["output"]["media"]


def test_checklist_38_host_calls_separated_by_open_attachment_are_separate_batches():
    ex = Recording()
    calls = []
    env = Env(ex, calls)
    aid = env.attachment(b"hello\n", path="a.txt")
    calls += [{"name": "a"}, {"name": "open_attachment", "arguments": {"artifact_id": aid}}, {"name": "b"}]
    state = env.tick()
    assert ex.batches == [[], ["a"], ["b"]]
    assert [r["name"] for r in state.output["res"]["results"]] == ["a", "open_attachment", "b"]


def test_checklist_39_delegating_wait_with_blocked_and_pre_results():
    calls = []
    env = Env(DelegatingMcpToolExecutor(server_id="w", mcp_url="http://127.0.0.1:9/mcp"), calls,
              allowed=["mcp::w::read_file", "open_attachment"])
    aid = env.attachment(b"alpha\n", path="a.txt")
    calls += [{"name": "open_attachment", "arguments": {"artifact_id": aid}},
              {"name": "mcp::w::read_file", "arguments": {"file_path": "x"}}, {"name": "rm", "arguments": {"p": 1}}]
    wait = env.tick().waiting
    assert wait.reason is WaitReason.JOB and wait.wait_key.startswith("mcp_job:")
    d = wait.details
    assert d["original_call_count"] == 3 and set(d["blocked_by_index"]) == {"2"}
    assert set(d["pre_results_by_index"]) == {"0"} and d["pre_results_by_index"]["0"]["success"] is True
    assert len(d["tool_calls_for_evidence"]) == 3 and [c["name"] for c in d["tool_calls"]] == ["mcp::w::read_file"]


def test_checklist_40_delegated_mode_mid_executed_batch_fails():
    env = Env(Recording(later_mode="delegated"), [{"name": "a"}])
    state = env.tick()
    assert state.status is RunStatus.FAILED
    assert state.error.endswith("ToolExecutor returned delegated mode during executed TOOL_CALLS batch")


def _read_file_tools():
    from abstractcore.tools.common_tools import read_file

    return MappingToolExecutor.from_tools([read_file])


def test_checklist_41_read_file_registers_a_session_attachment(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("alpha\nbeta\n")
    env = Env(_read_file_tools(), [{"name": "read_file", "arguments": {"file_path": str(f)}}])
    state = env.tick()
    assert state.status is RunStatus.COMPLETED and state.output["res"]["results"][0]["output"].startswith("File:")
    (entry,) = list_session_attachments(artifact_store=env.store, session_id="s1")
    meta = env.store.get_metadata(entry["artifact_id"])
    assert meta.run_id == "session_memory_s1"
    assert meta.tags == {"kind": "attachment", "source": "tool.read_file", "path": f.as_posix(),
                         "filename": "notes.txt", "session_id": "s1",
                         "sha256": hashlib.sha256(b"alpha\nbeta\n").hexdigest()}
    owner = env.rt.run_store.load("session_memory_s1")
    assert owner.workflow_id == "__session_memory__" and owner.status is RunStatus.COMPLETED


def test_checklist_42_large_read_file_output_becomes_a_stub(tmp_path, monkeypatch):
    monkeypatch.setenv("ABSTRACTRUNTIME_MAX_INLINE_BYTES", "40")
    f = tmp_path / "big.txt"
    f.write_text("".join(f"line {i}\n" for i in range(50)))
    env = Env(_read_file_tools(), [{"name": "read_file", "arguments": {"file_path": str(f)}}])
    out = env.tick().output["res"]["results"][0]["output"]
    (entry,) = list_session_attachments(artifact_store=env.store, session_id="s1")
    assert out == (f"[read_file]: (stored as attachment) @{f.as_posix()} (id={entry['artifact_id']}, "
                   f"sha={entry['sha256'][:8]}…).\nUse open_attachment(artifact_id='{entry['artifact_id']}', "
                   f"start_line=1, end_line=200) for bounded excerpts.")


def test_checklist_43_failed_read_file_falls_back_to_the_session_attachment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a.txt does not exist here
    calls = []
    env = Env(_read_file_tools(), calls)
    aid = env.attachment(b"alpha\nbeta\n", path="a.txt")
    calls += [{"name": "read_file", "arguments": {"file_path": "a.txt", "start_line": 2, "end_line": 2}}]
    (result,) = env.tick().output["res"]["results"]
    assert result["success"] is True and result["error"] is None
    assert result["output"] == f"File: a.txt (1 lines)\n(from attachment: @a.txt, id={aid}, sha=e49c81e2…)\n2: beta"


def test_checklist_44_mapping_executor_argument_canonicalisation():
    seen = []

    def read(file_path, start_line=1):
        seen.append((file_path, start_line))
        return "ok"

    ex = MappingToolExecutor({"read": read})
    out = ex.execute(tool_calls=[
        {"name": "read", "arguments": {"filePath": "a", "Start": 3, "junk": 1}},
        {"name": "read", "arguments": {"name": "read", "arguments": '{"file-path": "b"}'}}])
    assert [r["success"] for r in out["results"]] == [True, True]
    assert seen == [("a", 3), ("b", 1)]


def test_a_model_cannot_set_a_host_only_underscore_parameter():
    """abstractcore's execute_command has a hidden `_sandbox` the host stamps: a model's `_sandbox` (or `sandbox`,
    which normalises to the same key) is dropped, never passed to the tool."""
    seen = []

    def run_cmd(command, _sandbox=None, **extra):
        seen.append((command, _sandbox, extra))
        return "ok"

    ex = MappingToolExecutor({"run_cmd": run_cmd})
    out = ex.execute(tool_calls=[
        {"name": "run_cmd", "arguments": {"command": "ls", "_sandbox": {"paths": ["/"]}}},
        {"name": "run_cmd", "arguments": {"command": "ls", "sandbox": {"paths": ["/"]}, "_private": 1}}])
    assert [r["success"] for r in out["results"]] == [True, True]
    assert seen == [("ls", None, {}), ("ls", None, {"sandbox": {"paths": ["/"]}})]


def test_checklist_45_mapping_executor_error_detection():
    ex = MappingToolExecutor({"e1": lambda: "Error: x", "e2": lambda: "❌ Error: x",
                              "d": lambda: {"ok": False, "message": "nope", "n": 1},
                              "tb": lambda: "Traceback (most recent call last): ..."})
    r = ex.execute(tool_calls=[{"name": n, "call_id": n} for n in ("e1", "e2", "d", "tb")])["results"]
    assert [(x["success"], x["error"]) for x in r[:2]] == [(False, "x"), (False, "x")]
    assert r[0]["output"] is None
    assert r[2]["success"] is False and r[2]["error"] == "nope" and r[2]["output"] == {"ok": False, "message": "nope",
                                                                                       "n": 1}
    assert r[3]["success"] is True and r[3]["output"].startswith("Traceback")


def test_checklist_46_mapping_executor_timeout():
    slow = MappingToolExecutor({"slow": lambda: time.sleep(2) or "late"}, timeout_s=0.5)
    (r,) = slow.execute(tool_calls=[{"name": "slow"}])["results"]
    assert r["success"] is False and r["error"] == "Tool execution timed out after 0.5s"
    unlimited = MappingToolExecutor({"nap": lambda: time.sleep(0.6) or "done"}, timeout_s=0)
    assert unlimited.execute(tool_calls=[{"name": "nap"}])["results"][0]["output"] == "done"


# line 47 (create_local_runtime pushes the config tool timeout into a caller's executor) is the factory's:
# tests/plugins/abstractcore/test_ac_surface_factory_summarizer.py::test_checklist_47_...


class _McpHandler(BaseHTTPRequestHandler):
    replies = {"ok": {"content": [{"type": "text", "text": '{"n": 1}'}], "isError": False},
               "fails": {"content": [{"type": "text", "text": "disk full"}], "isError": True},
               "tb": {"content": [{"type": "text", "text": "Traceback (most recent call last):\n boom"}]}}

    def do_POST(self):  # noqa: N802
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"jsonrpc": "2.0", "id": req["id"],
                           "result": self.replies[req["params"]["name"]]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_checklist_48_mcp_executor_server_check_and_errors():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _McpHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ex = McpToolExecutor(server_id="w", mcp_url=f"http://127.0.0.1:{server.server_port}/mcp")
        r = ex.execute(tool_calls=[{"name": "mcp::other::x"}, {"name": "mcp::w::ok"}, {"name": "fails"},
                                   {"name": "mcp::w::tb"}])["results"]
        assert r[0]["error"] == "MCP tool 'mcp::other::x' targets server 'other', expected 'w'"
        assert r[1]["success"] is True and r[1]["output"] == {"n": 1}
        assert r[2]["success"] is False and r[2]["error"] == "disk full"
        assert r[3]["success"] is False and r[3]["error"].startswith("Traceback")
        with pytest.raises(ValueError):
            McpToolExecutor(server_id=" ", mcp_url="http://x")
    finally:
        server.shutdown()


def test_checklist_49_scope_from_input_data(tmp_path):
    scope = WorkspaceScope.from_input_data({"workspace_root": "rel"}, base_dir=tmp_path)
    assert scope.root == (tmp_path / "rel").resolve() and scope.root.is_dir()
    assert scope.access_mode == "workspace_only"
    with pytest.raises(ValueError, match="Invalid workspace_access_mode: 'bogus'"):
        WorkspaceScope.from_input_data({"workspace_root": "rel", "workspace_access_mode": "bogus"}, base_dir=tmp_path)


def test_checklist_50_virtual_mount_names(tmp_path):
    other = tmp_path / "x" / "Other Dir"
    other.mkdir(parents=True)
    scope = WorkspaceScope.from_input_data({"workspace_root": str(tmp_path / "ws"),
                                            "workspace_access_mode": "workspace_or_allowed",
                                            "workspace_allowed_paths": [str(other)]})
    assert resolve_user_path(scope=scope, user_path="other-dir/a.txt") == other.resolve() / "a.txt"
    assert resolve_user_path(scope=scope, user_path="@other-dir/a.txt") == other.resolve() / "a.txt"
    assert resolve_user_path(scope=scope, user_path="other-dir") == (tmp_path / "ws" / "other-dir").resolve()


def test_checklist_51_path_refusals(tmp_path):
    only = WorkspaceScope.from_input_data({"workspace_root": str(tmp_path / "ws"),
                                           "workspace_ignored_paths": ["secret"]})
    with pytest.raises(ValueError, match=r"Path escapes workspace_root: '\.\./escape'"):
        resolve_user_path(scope=only, user_path="../escape")
    with pytest.raises(ValueError, match="Path is blocked by workspace_ignored_paths"):
        resolve_user_path(scope=only, user_path="secret/key.pem")
    allowed = WorkspaceScope.from_input_data({"workspace_root": str(tmp_path / "ws"),
                                              "workspace_access_mode": "workspace_or_allowed"})
    with pytest.raises(ValueError, match="Path is outside workspace roots: '/etc/hosts'"):
        resolve_user_path(scope=allowed, user_path="/etc/hosts")


def test_checklist_52_rewrite_defaults_and_required_file_path(tmp_path):
    scope = WorkspaceScope.from_input_data({"workspace_root": str(tmp_path)})
    root = str(tmp_path.resolve())
    assert rewrite_tool_arguments(tool_name="list_files", args={}, scope=scope)["directory_path"] == root
    assert rewrite_tool_arguments(tool_name="search_files", args={"path": ""}, scope=scope)["path"] == root
    assert rewrite_tool_arguments(tool_name="execute_command", args={"command": "ls"},
                                  scope=scope)["working_directory"] == root
    assert rewrite_tool_arguments(tool_name="read_file", args={"path": "a.txt"}, scope=scope)["file_path"] == \
        str(tmp_path.resolve() / "a.txt")
    for tool in ("read_file", "write_file", "edit_file", "analyze_code"):
        with pytest.raises(ValueError, match=f"{tool} requires file_path"):
            rewrite_tool_arguments(tool_name=tool, args={}, scope=scope)


def test_rewrite_checks_every_path_of_a_skim_tools_joined_paths_argument(tmp_path):
    """`paths` given as one string is split as the skim tools split it (`|`, newlines, commas, a JSON list) and each
    path is resolved and checked -- `docs|/etc` must not pass as one path inside the workspace."""
    scope = WorkspaceScope.from_input_data({"workspace_root": str(tmp_path)})
    root = tmp_path.resolve()
    for joined in ("a.txt|b.txt", "a.txt\nb.txt", "a.txt,b.txt", '["a.txt", "b.txt"]'):
        out = rewrite_tool_arguments(tool_name="skim_files", args={"paths": joined}, scope=scope)
        assert out["paths"] == [str(root / "a.txt"), str(root / "b.txt")], joined
    with pytest.raises(ValueError, match="Path escapes workspace_root"):
        rewrite_tool_arguments(tool_name="skim_folders", args={"paths": "docs|../../etc"}, scope=scope)


def _store_with_attachments():
    store = InMemoryArtifactStore()
    owner = session_memory_owner_run_id("s1")
    first = store.store(b"a", content_type="text/plain", run_id=owner,
                        tags={"kind": "attachment", "path": "@./docs/a.md", "session_id": "s1"}).artifact_id
    store.store(b"n", run_id=owner, tags={"kind": "note", "path": "n.txt"})
    store.store(b"o", run_id="other-run", tags={"kind": "attachment", "path": "o.txt"})
    second = store.store(b"b", content_type="text/plain", run_id=owner,
                         tags={"kind": "attachment", "path": "./b.txt", "sha256": "ABCDEF12" * 8}).artifact_id
    return store, first, second


def test_checklist_53_list_session_attachments():
    store, first, second = _store_with_attachments()
    entries = list_session_attachments(artifact_store=store, session_id="s1")
    assert [(e["handle"], e["artifact_id"]) for e in entries] == [("b.txt", second), ("docs/a.md", first)]
    assert entries[0]["sha256"] == ("abcdef12" * 8) and "sha256" not in entries[1]
    assert "session_id" not in entries[1]["tags"] and entries[1]["filename"] == "a.md"


def test_checklist_54_unknown_artifact_id_is_retried_as_a_handle():
    store, first, _ = _store_with_attachments()
    common = dict(artifact_store=store, session_id="s1", handle=None, expected_sha256=None, start_line=1,
                  end_line=None, max_chars=8000)
    ok, out, err = execute_open_attachment(artifact_id="docs/a.md", **common)
    assert ok and out["artifact_id"] == first
    ok, out, err = execute_open_attachment(artifact_id="docs/a.txt", **common)
    assert not ok and err == "attachment not found"
    assert out["suggestions"][0]["artifact_id"] == first and "Did you mean:" in out["rendered"]


def test_checklist_55_small_text_preview_returns_the_whole_file():
    store = InMemoryArtifactStore()
    text = "".join(f"row {i}\n" for i in range(1, 41)).encode()
    aid = store.store(text, content_type="text/plain", run_id="session_memory_s1",
                      tags={"kind": "attachment", "path": "rows.txt"}).artifact_id
    ok, out, _ = execute_open_attachment(artifact_store=store, session_id="s1", artifact_id=aid, handle=None,
                                         expected_sha256=None, start_line=1, end_line=10, max_chars=8000)
    assert ok and out["start_line"] == 1 and out["end_line"] == 40 and out["truncated"] is False
    assert out["rendered"].startswith(f"Attachment: rows.txt (id={aid}, lines 1-40)\n\n 1: row 1\n")


def test_checklist_56_image_attachment_returns_media():
    store = InMemoryArtifactStore()
    aid = store.store(PNG, content_type="image/png", run_id="session_memory_s1",
                      tags={"kind": "attachment", "path": "chart.png", "filename": "chart.png"}).artifact_id
    ok, out, err = execute_open_attachment(artifact_store=store, session_id="s1", artifact_id=aid, handle=None,
                                           expected_sha256=None, start_line=1, end_line=None, max_chars=8000)
    assert ok and err is None and out["media"][0]["$artifact"] == aid
    assert out["rendered"].endswith("(binary/media attachment; it will be attached as media for the next LLM call)")


def test_checklist_57_expected_sha256_must_be_the_full_sha():
    store = InMemoryArtifactStore()
    sha = hashlib.sha256(b"v2").hexdigest()
    for content in (b"v1", b"v2"):
        store.store(content, content_type="text/plain", run_id="session_memory_s1",
                    tags={"kind": "attachment", "path": "a.txt", "sha256": hashlib.sha256(content).hexdigest()})
    common = dict(artifact_store=store, session_id="s1", artifact_id=None, handle="a.txt", start_line=1,
                  end_line=None, max_chars=8000)
    ok, out, err = execute_open_attachment(expected_sha256=sha, **common)
    assert ok and out["content_text"] == "v2"
    assert execute_open_attachment(expected_sha256=sha[:8], **common)[2] == "attachment not found"
    assert execute_open_attachment(expected_sha256=None, **common)[2] == "multiple matches"


def test_checklist_58_dedup_messages_view():
    body = "[read_file]: File: /w/a.txt (2 lines)\n\n1: alpha\n2: beta"
    messages = [{"role": "user", "content": "hi"}, {"role": "tool", "content": body}, "junk",
                {"role": "tool", "content": body}]
    view = dedup_messages_view(messages)
    assert view[1]["content"] == body and len(view) == 3
    assert view[2]["content"].startswith("[read_file]: (duplicate) File already shown above: a.txt lines 1-2.")
    assert messages[3]["content"] == body  # the durable context is not changed
