"""``abstractruntime-mcp-worker`` driven as a subprocess over stdio and HTTP (auth, origins, errors)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from abstractruntime_abstractcore import McpToolExecutor

WORKER = [sys.executable, "-m", "abstractruntime_abstractcore.mcp_worker"]
FILES = {"list_files", "skim_folders", "search_files", "analyze_code", "skim_files", "read_file", "write_file",
         "edit_file"}
TOKEN = "s3cret-token-for-tests"


def rpc(id_, method, params=None):
    msg = {"jsonrpc": "2.0", "method": method}
    if id_ is not None:
        msg["id"] = id_
    if params is not None:
        msg["params"] = params
    return msg


def test_stdio_transport(tmp_path):
    (tmp_path / "hello.txt").write_text("hello world\n")
    lines = [rpc(1, "initialize", {"protocolVersion": "2024-11-05"}), rpc(None, "notifications/initialized"),
             rpc(2, "tools/list"),
             rpc(3, "tools/call", {"name": "read_file", "arguments": {"file_path": str(tmp_path / "hello.txt")}}),
             rpc(4, "tools/call", {"name": "read_file", "arguments": {"file_path": str(tmp_path / "missing")}}),
             rpc(5, "tools/call", {"name": "no_such_tool", "arguments": {}}),
             rpc(6, "tools/call", {"arguments": {}}), rpc(7, "bogus/method"), {"id": 8, "method": "ping"},
             rpc(9, "initialize")]
    stdin = "\n".join(json.dumps(m) for m in lines) + "\nthis is not json\n[1, 2]\n"
    proc = subprocess.run(WORKER + ["--toolsets", "files"], input=stdin, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]  # stdout carries responses only
    by_id = {r["id"]: r for r in out if r.get("id") is not None}
    assert len(out) == 11  # 10 requests + 2 garbage lines - 1 notification
    assert by_id[1]["result"]["protocolVersion"] == "2024-11-05"
    assert by_id[1]["result"]["capabilities"] == {"tools": {}}
    assert by_id[9]["result"]["protocolVersion"] == "2025-11-25"
    tools = by_id[2]["result"]["tools"]
    assert {t["name"] for t in tools} == FILES
    assert all(t["inputSchema"]["type"] == "object" for t in tools)
    ok = by_id[3]["result"]
    assert ok["isError"] is False and "hello world" in ok["content"][0]["text"]
    assert by_id[4]["result"]["isError"] is True
    assert by_id[5]["result"]["isError"] is True and "Unknown tool" in by_id[5]["result"]["content"][0]["text"]
    assert by_id[6]["error"]["code"] == -32602
    assert by_id[7]["error"]["code"] == -32601
    assert by_id[8]["error"]["code"] == -32600  # jsonrpc missing
    anonymous = [r for r in out if r.get("id") is None]
    assert sorted(r["error"]["code"] for r in anonymous) == [-32700, -32600]
    assert "serving 8 tool(s)" in proc.stderr


class HttpWorker:
    def __init__(self, *args, env=None):
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(WORKER + ["--transport", "http", "--port", "0", *args],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=full_env)
        deadline = time.time() + 120
        self.stderr_lines = []
        while True:
            assert time.time() < deadline, "worker did not start"
            line = self.proc.stderr.readline()
            assert line or self.proc.poll() is None, "".join(self.stderr_lines)
            self.stderr_lines.append(line)
            match = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
            if match:
                self.url = match.group(1)
                break

    def post(self, body, headers=None, method="POST"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url, data=data if method == "POST" else None, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        rest = self.proc.stderr.read()
        self.proc.stderr.close()
        return "".join(self.stderr_lines) + rest


def test_http_without_auth_on_loopback(tmp_path):
    (tmp_path / "a.txt").write_text("A")
    worker = HttpWorker("--toolsets", "files", "--http-allow-origin", "http://ok.example,http://also.example")
    try:
        status, _, body = worker.post(rpc(1, "tools/list"))
        assert status == 200 and {t["name"] for t in body["result"]["tools"]} == FILES
        status, headers, body = worker.post(rpc(2, "tools/call", {"name": "list_files", "arguments": {
            "directory_path": str(tmp_path)}}), headers={"Origin": "http://ok.example"})
        assert status == 200 and "a.txt" in body["result"]["content"][0]["text"]
        assert headers.get("Access-Control-Allow-Origin") == "http://ok.example"
        status, _, body = worker.post(rpc(3, "tools/list"), headers={"Origin": "http://evil.example"})
        assert status == 403 and body["error"]["code"] == -32000
        status, _, body = worker.post(b"{not json")
        assert status == 400 and body["error"]["code"] == -32700
        status, _, body = worker.post(rpc(None, "notifications/initialized"))
        assert status == 200 and body["error"]["code"] == -32600
        status, _, _ = worker.post(None, method="GET")
        assert status == 405
        # the runtime's MCP executor talks to it
        ex = McpToolExecutor(server_id="w", mcp_url=worker.url)
        (res,) = ex.execute(tool_calls=[{"name": "mcp::w::read_file", "call_id": "c",
                                         "arguments": {"file_path": str(tmp_path / "a.txt")}}])["results"]
        assert res["success"] and "A" in res["output"]
        (res,) = ex.execute(tool_calls=[{"name": "mcp::other::read_file", "arguments": {}}])["results"]
        assert not res["success"] and "targets server 'other'" in res["error"]
    finally:
        worker.stop()


def test_http_require_auth_with_token_from_the_environment():
    worker = HttpWorker("--toolsets", "web", "--http-require-auth", env={"ABSTRACT_WORKER_TOKEN": TOKEN})
    try:
        status, headers, body = worker.post(rpc(1, "tools/list"))
        assert status == 401 and body["error"]["code"] == -32001
        assert headers.get("WWW-Authenticate") == "Bearer"
        status, _, _ = worker.post(rpc(1, "tools/list"), headers={"Authorization": "Bearer wrong"})
        assert status == 401
        status, _, _ = worker.post(rpc(1, "tools/list"), headers={"Authorization": f"Bearer {TOKEN}x"})
        assert status == 401
        status, _, body = worker.post(rpc(1, "tools/list"), headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and {t["name"] for t in body["result"]["tools"]} == {"web_search", "fetch_url"}
        status, _, body = worker.post(rpc(2, "initialize"), headers={"X-Abstract-Worker-Token": TOKEN})
        assert status == 200 and body["result"]["serverInfo"]["name"] == "abstractruntime-mcp-worker"
        status, _, _ = worker.post(rpc(3, "tools/list"), headers={"Origin": "http://x.example",
                                                                   "Authorization": f"Bearer {TOKEN}"})
        assert status == 403  # the Origin check comes first
    finally:
        log = worker.stop()
    assert TOKEN not in log


@pytest.mark.parametrize("args, env, message", [
    (["--toolsets", ""], {}, "selects no toolset"),
    (["--toolsets", "files,bogus"], {}, "unknown toolset"),
    (["--toolsets", "files", "--transport", "http", "--http-require-auth"], {}, "needs a token"),
    (["--toolsets", "files", "--transport", "http", "--host", "0.0.0.0"], {}, "non-loopback"),
    (["--toolsets", "comms"], {}, "provide no tools"),
])
def test_refusals_exit_1(args, env, message):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ABSTRACT_WORKER", "ABSTRACT_ENABLE"))}
    full_env.update(env)
    proc = subprocess.run(WORKER + args, capture_output=True, text=True, timeout=120, env=full_env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert message in proc.stderr
