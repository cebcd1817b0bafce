"""Issue 24, integration-surface.md §5 (the MCP worker): checklist lines 59-63, the transport-independent dispatcher
(§5.3), the request log (§5.4) and talking to the worker from a runtime (§5.5). The worker runs as a real process
(stdio and HTTP) and in-process through its public functions (``serve_stdio``, ``build_wsgi_app``)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from test_ac_mcp_worker import TOKEN, WORKER, HttpWorker, rpc

from abstractruntime import Effect, EffectType, RunStatus, StepPlan, WaitReason, WorkflowSpec
from abstractruntime.integrations.abstractcore.mcp_worker import (
    McpWorkerState,
    build_worker_state,
    build_wsgi_app,
    handle_mcp_request,
    serve_stdio,
)
from abstractruntime.integrations.abstractcore.tool_executor import DelegatingMcpToolExecutor, McpToolExecutor
from abstractruntime_abstractcore import MappingToolExecutor, create_remote_runtime

FILES = ["analyze_code", "edit_file", "list_files", "read_file", "search_files", "skim_files", "skim_folders",
         "write_file"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ABSTRACT_WORKER", "ABSTRACT_ENABLE"))}
    env.update(extra)
    return env


def _stdio(args, lines, env=None):
    stdin = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    proc = subprocess.run(WORKER + args, input=stdin, capture_output=True, text=True, timeout=120,
                          env=env or _env())
    return proc, [json.loads(line) for line in proc.stdout.splitlines()]


# --- checklist 59 ------------------------------------------------------------------------------------------------------
def test_checklist_59_tools_sorted_by_name_with_required_parameters_without_defaults(tmp_path):
    state = build_worker_state(toolsets=[" files "])
    assert [t["name"] for t in state.tools] == FILES
    read_file = next(t for t in state.tools if t["name"] == "read_file")
    schema = read_file["inputSchema"]
    assert schema["type"] == "object" and schema["required"] == ["file_path"]
    assert schema["properties"]["file_path"]["type"] == "string"
    assert "default" in schema["properties"]["start_line"] and "start_line" not in schema["required"]
    list_files = next(t for t in state.tools if t["name"] == "list_files")
    assert "required" not in list_files["inputSchema"]  # every parameter has a default
    for tool in state.tools:
        props = tool["inputSchema"]["properties"]
        assert tool["inputSchema"].get("required", []) == [p for p, s in props.items() if "default" not in s]
        assert tool["description"].strip()
    assert isinstance(state.executor, MappingToolExecutor) and state.executor.timeout_s is None
    # the real worker lists the same
    proc, out = _stdio(["--toolsets", "files,web"], [rpc(1, "tools/list")])
    names = [t["name"] for t in out[0]["result"]["tools"]]
    assert names == sorted(names) and set(FILES) <= set(names) and "fetch_url" in names, proc.stderr


def test_section_5_2_nothing_selected_or_unknown_toolsets_raise():
    from abstractruntime_abstractcore.errors import McpWorkerError

    with pytest.raises(ValueError, match=r"^No tools selected\."):
        build_worker_state(toolsets=["comms"])  # comms tools are off without their environment switches
    with pytest.raises(ValueError, match=r"^No tools selected\."):
        build_worker_state(toolsets=[" ", ""])
    with pytest.raises(McpWorkerError, match="Unknown toolset"):
        build_worker_state(toolsets=["files", "fles"])


# --- checklist 60 ------------------------------------------------------------------------------------------------------
def test_checklist_60_stdio_parse_errors_notifications_and_initialize():
    proc, out = _stdio(["--toolsets", "files"], [
        "this is not json",  # our departure: a -32700 line (0.4.2 answers nothing), and the worker goes on
        rpc(None, "notifications/initialized"),
        {"jsonrpc": "2.0", "id": None, "method": "notifications/cancelled"},  # id null: a notification too
        rpc(1, "initialize", {"protocolVersion": "2024-11-05"}),
        rpc(2, "initialize")])
    assert proc.returncode == 0, proc.stderr
    assert len(out) == 3  # the parse error and the two initialize answers; the notifications produce nothing
    assert out[0] == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": out[0]["error"]["message"]}}
    assert out[0]["error"]["message"].startswith("Parse error")
    assert out[1]["id"] == 1 and out[1]["result"]["protocolVersion"] == "2024-11-05"
    assert out[1]["result"]["capabilities"] == {"tools": {}}
    assert out[1]["result"]["serverInfo"]["name"] == "abstractruntime-mcp-worker"
    assert out[2]["result"]["protocolVersion"] == "2025-11-25"


def test_section_5_3_serve_stdio_in_process_is_sequential_and_single_line():
    state = build_worker_state(toolsets=["files"])
    stdin = io.StringIO("\n".join(json.dumps(x) for x in [
        rpc(1, "tools/call", {"name": "read_file", "arguments": {"file_path": "/no/such/file-∆"}}),
        rpc(2, "tools/list"), rpc(None, "x"), [1, 2]]) + "\n\n")
    stdout = io.StringIO()
    assert serve_stdio(state=state, stdin=stdin, stdout=stdout) is None
    lines = stdout.getvalue().splitlines()
    answers = [json.loads(x) for x in lines]
    assert [a["id"] for a in answers] == [1, 2, None]
    assert answers[0]["result"]["isError"] is True and "∆" in lines[0]  # ensure_ascii=False
    assert answers[2]["error"] == {"code": -32600, "message": "Invalid Request: must be an object"}


# --- §5.3 the dispatcher -----------------------------------------------------------------------------------------------
class _Broken:
    """A host executor that breaks the executor contract."""

    def execute(self, *, tool_calls):
        return {"mode": "executed", "results": ["not a result"]}


def _tool_none():
    return None


def _tool_dict():
    return {"answer": "ja", "n": 1}


def test_section_5_3_handle_mcp_request_codes_and_results():
    state = McpWorkerState(tools=[], executor=MappingToolExecutor({"none": _tool_none, "dict": _tool_dict}))
    ask = lambda req: handle_mcp_request(req=req, state=state)  # noqa: E731
    assert ask([1]) == {"jsonrpc": "2.0", "id": None,
                        "error": {"code": -32600, "message": "Invalid Request: must be an object"}}
    assert ask({"id": 3, "method": "tools/list"})["error"] == {
        "code": -32600, "message": "Invalid Request: jsonrpc must be '2.0'"}
    assert ask({"jsonrpc": "2.0", "id": 3})["error"]["message"] == "Invalid Request: missing method"
    assert ask({"jsonrpc": "2.0", "method": "bogus"}) is None  # a notification, even for an unknown method
    assert ask(rpc(4, "bogus"))["error"] == {"code": -32601, "message": "Method not found: bogus"}
    assert ask(rpc(5, "tools/call", {"arguments": {}}))["error"] == {
        "code": -32602, "message": "Invalid params: missing tool name"}
    assert ask(rpc(6, "tools/call", {"name": "none"}))["result"] == {
        "content": [{"type": "text", "text": "null"}], "isError": False}
    text = ask(rpc(7, "tools/call", {"name": "dict", "arguments": "not a dict"}))["result"]["content"][0]["text"]
    assert json.loads(text) == {"answer": "ja", "n": 1}
    assert ask(rpc(8, "tools/list")) == {"jsonrpc": "2.0", "id": 8, "result": {"tools": []}}
    broken = McpWorkerState(tools=[], executor=_Broken())
    assert handle_mcp_request(req=rpc(9, "tools/call", {"name": "x"}), state=broken)["error"] == {
        "code": -32000, "message": "Tool execution failed (malformed result)"}


# --- checklist 61 ------------------------------------------------------------------------------------------------------
def test_checklist_61_http_check_order_and_codes():
    worker = HttpWorker("--toolsets", "files", "--http-require-auth", env={"ABSTRACT_WORKER_TOKEN": TOKEN})
    auth = {"Authorization": f"bearer {TOKEN}"}  # the scheme is case-insensitive
    try:
        status, _, body = worker.post(rpc(1, "tools/list"), headers={"Origin": "http://evil.example"})
        assert status == 403 and body["error"]["code"] == -32000  # before auth: no token was sent
        status, headers, body = worker.post(rpc(1, "tools/list"))
        assert status == 401 and headers.get("WWW-Authenticate") == "Bearer" and body["error"]["code"] == -32001
        status, _, _ = worker.post(None, method="GET")
        assert status == 401  # unauthenticated GET: auth comes before the method check
        status, _, _ = worker.post(None, method="GET", headers=auth)
        assert status == 405
        status, _, body = worker.post(b"{not json", headers=auth)
        assert status == 400 and body["error"]["code"] == -32700 and body["id"] is None
        status, _, body = worker.post(rpc(None, "notifications/initialized"), headers=auth)
        assert status == 200 and body["error"]["code"] == -32600
        status, _, body = worker.post(rpc(2, "tools/list"), headers={"X-Abstract-Worker-Token": TOKEN})
        assert status == 200 and [t["name"] for t in body["result"]["tools"]] == FILES
        status, _, body = worker.post(b"[1, 2]", headers=auth)  # a JSON non-object: an invalid request, HTTP 200
        assert status == 200 and body["error"]["code"] == -32600
    finally:
        worker.stop()


def test_section_5_3_build_wsgi_app_serves_in_process():
    state = build_worker_state(toolsets=["files"], http_require_auth=True, http_auth_token=TOKEN,
                               http_allowed_origins=["http://ok.example/"])

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    httpd = make_server("127.0.0.1", 0, build_wsgi_app(state=state), handler_class=Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/any/path"
    try:
        def post(headers):
            req = urllib.request.Request(url, data=json.dumps(rpc(1, "tools/list")).encode(), method="POST",
                                         headers={"Content-Type": "application/json", **headers})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        assert post({})[0] == 401
        status, body = post({"Authorization": f"Bearer {TOKEN}", "Origin": "http://ok.example"})
        assert status == 200 and len(body["result"]["tools"]) == 8
        misconfigured = McpWorkerState(tools=[], executor=state.executor, http_require_auth=True)
        environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "0", "wsgi.input": io.BytesIO(b"")}
        seen = []
        body = b"".join(build_wsgi_app(state=misconfigured)(environ, lambda s, h: seen.append(s)))
        assert seen == ["500 Internal Server Error"] and json.loads(body)["error"] == {
            "code": -32000, "message": "Server misconfigured: auth enabled but no token set"}
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- checklist 62 ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, env", [
    (["--toolsets", "files", "--transport", "http", "--http-require-auth"], {}),
    (["--toolsets", "files", "--transport", "http", "--http-require-auth", "--http-auth-token", " "],
     {"ABSTRACT_WORKER_TOKEN": "  "}),
    (["--toolsets", "files", "--transport", "http", "--http-require-auth", "--http-auth-token-env", "MY_TOKEN"],
     {"ABSTRACT_WORKER_TOKEN": TOKEN}),  # the env named by the flag is the one consulted
    (["--toolsets", ""], {}),
    ([], {}),  # --toolsets defaults to "" (nothing selected)
    (["--toolsets", "comms"], {}),  # comms without its environment switch selects nothing
])
def test_checklist_62_refusals_exit_1(args, env):
    proc = subprocess.run(WORKER + args, capture_output=True, text=True, timeout=120, env=_env(**env),
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    if "--http-require-auth" not in args:
        assert proc.stderr.startswith("Failed to start MCP worker.") and "Available toolsets:" in proc.stderr


# --- checklist 63 ------------------------------------------------------------------------------------------------------
def test_checklist_63_logs_on_stderr_and_never_the_token(tmp_path):
    (tmp_path / "a.txt").write_text("A")
    worker = HttpWorker("--toolsets", "files", "--http-require-auth", env={"ABSTRACT_WORKER_TOKEN": TOKEN})
    try:
        auth = {"Authorization": f"Bearer {TOKEN}", "User-Agent": "probe/1"}
        worker.post(rpc(1, "tools/list"), headers=auth)
        worker.post(rpc(2, "tools/call", {"name": "read_file", "arguments": {
            "file_path": str(tmp_path / "a.txt"), "note": TOKEN}}), headers=auth)
        worker.post(rpc(3, "tools/list"), headers={"Authorization": f"Bearer {TOKEN}x"})
    finally:
        log = worker.stop()
    assert TOKEN not in log
    receiving = [x for x in log.splitlines() if x.startswith("[RECEIVING_COMMANDS] ")]
    returning = [x for x in log.splitlines() if x.startswith("[RETURNING_RESULTS] ")]
    assert len(receiving) == len(returning) == 3
    assert "http POST / " in receiving[0] and "auth=present" in receiving[0] and "ua=probe/1" in receiving[0]
    assert "rpc method=tools/list id=1" in receiving[0]
    assert "rpc method=tools/call id=2 name=read_file args={" in receiving[1] and '"note":"***"' in receiving[1]
    assert "status=200" in returning[0] and "rpc_result tools_count=8 names=analyze_code,edit_file" in returning[0]
    assert "rpc_result isError=false preview=" in returning[1] and "elapsed_s=" in returning[1]
    assert "status=401" in returning[2] and "rpc_error code=-32001" in returning[2]
    # stdio: the log goes to stderr, stdout carries the answers only
    proc, out = _stdio(["--toolsets", "files"], [rpc(1, "initialize", {"protocolVersion": "2024-11-05"}),
                                                 rpc(None, "notifications/initialized")])
    assert len(out) == 1 and "[RECEIVING_COMMANDS]" not in proc.stdout
    lines = [x for x in proc.stderr.splitlines() if x.startswith("[")]
    assert lines[0].startswith("[RECEIVING_COMMANDS] ") and "stdio rpc method=initialize id=1" in lines[0]
    assert "protocolVersion=2024-11-05" in lines[0]
    assert lines[1].startswith("[RETURNING_RESULTS] ") and "ok=true" in lines[1]
    assert "rpc_result protocolVersion=2024-11-05" in lines[1]
    assert "rpc notification(no response)" in lines[3]
    assert "\033[" not in proc.stderr  # not a terminal: no colours


# --- §5.5 talking to the worker from a runtime -------------------------------------------------------------------------
def _tools_flow(calls):
    return WorkflowSpec(workflow_id="mcp", entry_node="call", nodes={
        "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(EffectType.TOOL_CALLS, {"tool_calls": calls},
                                                                        "res"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"res": run.vars.get("res")}),
    })


def test_section_5_5_synchronous_and_delegated_tool_calls_through_the_worker(tmp_path, llm_server):
    (tmp_path / "a.txt").write_text("alpha\n")
    worker = HttpWorker("--toolsets", "files")
    calls = [{"name": "mcp::w::read_file", "arguments": {"file_path": str(tmp_path / "a.txt")}, "call_id": "c1"},
             {"name": "list_files", "arguments": {"directory_path": str(tmp_path)}, "call_id": "c2"}]
    try:
        mcp = McpToolExecutor(server_id="w", mcp_url=worker.url)
        rt = create_remote_runtime(server_base_url=llm_server.root_url, model="m", tool_executor=mcp)
        flow = _tools_flow(calls)
        state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
        assert state.status is RunStatus.COMPLETED, state.error
        results = state.output["res"]["results"]
        assert [r["success"] for r in results] == [True, True]
        assert "alpha" in results[0]["output"] and "a.txt" in results[1]["output"]
        assert [r["call_id"] for r in results] == ["c1", "c2"]

        # delegated: a JOB wait describing the worker; a host runs the calls and resumes
        rt = create_remote_runtime(server_base_url=llm_server.root_url, model="m",
                                   tool_executor=DelegatingMcpToolExecutor(server_id="w", mcp_url=worker.url))
        run_id = rt.start(workflow=flow)
        state = rt.tick(workflow=flow, run_id=run_id)
        assert state.status is RunStatus.WAITING and state.waiting.reason is WaitReason.JOB
        assert state.waiting.wait_key.startswith("mcp_job:")
        details = state.waiting.details
        assert details["executor"] == {"protocol": "mcp", "transport": "streamable_http", "url": worker.url,
                                       "server_id": "w", "tool_name_prefix": "mcp::w::"}
        executed = mcp.execute(tool_calls=details["tool_calls"])
        state = rt.resume(workflow=flow, run_id=run_id, wait_key=state.waiting.wait_key, payload=executed)
        assert state.status is RunStatus.COMPLETED, state.error
        assert [r["success"] for r in state.output["res"]["results"]] == [True, True]
        assert "alpha" in state.output["res"]["results"][0]["output"]
    finally:
        worker.stop()
