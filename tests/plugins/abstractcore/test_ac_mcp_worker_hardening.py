"""``abstractruntime-mcp-worker`` under hostile input, as real processes: a request nested 100,000 levels deep gets a
-32700 parse error and the worker answers the next request (stdio and HTTP); bad command-line values exit 2 with an
``error:`` line (no traceback); ``--workspace DIR`` refuses paths outside DIR."""

from __future__ import annotations

import json
import subprocess

import pytest
from test_ac_mcp_worker import WORKER, HttpWorker, rpc

DEEP = "[" * 100_000


def _stdio(args, lines, **kw):
    stdin = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    proc = subprocess.run(WORKER + args, input=stdin, capture_output=True, text=True, timeout=120, **kw)
    return proc, [json.loads(line) for line in proc.stdout.splitlines()]


def test_stdio_deep_request_gets_parse_error_and_the_worker_goes_on():
    proc, out = _stdio(["--toolsets", "files"], [DEEP, rpc(1, "ping"), '{"a":' * 5000 + "1" + "}" * 5000,
                                                 rpc(2, "tools/list")])
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
    assert len(out) == 4
    assert out[0]["id"] is None and out[0]["error"]["code"] == -32700
    assert "nested 100000 levels deep" in out[0]["error"]["message"] and "limit is 200" in out[0]["error"]["message"]
    assert out[1] == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert out[2]["error"]["code"] == -32700
    assert out[3]["id"] == 2 and out[3]["result"]["tools"]


def test_stdio_overlong_line_is_refused_and_the_worker_goes_on():
    huge = '{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "' + "a" * (10 * 1024 * 1024) + '"}}'
    proc, out = _stdio(["--toolsets", "files"], [huge, rpc(2, "ping")])
    assert proc.returncode == 0, proc.stderr
    assert out[0]["id"] is None and out[0]["error"]["code"] == -32600 and "too large" in out[0]["error"]["message"]
    assert out[1] == {"jsonrpc": "2.0", "id": 2, "result": {}}


def test_stdio_depth_at_the_limit_is_parsed():
    params = {"protocolVersion": "2024-11-05", "x": json.loads("[" * 190 + "]" * 190)}
    proc, out = _stdio(["--toolsets", "files"], [rpc(1, "initialize", params)])
    assert out[0]["result"]["protocolVersion"] == "2024-11-05", proc.stderr


def test_http_deep_body_gets_400_parse_error_and_the_worker_goes_on():
    worker = HttpWorker("--toolsets", "files")
    try:
        status, _, body = worker.post(DEEP.encode())
        assert status == 400 and body["error"]["code"] == -32700
        assert "nested 100000 levels deep" in body["error"]["message"]
        status, _, body = worker.post(b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": ' + b"[" * 3000
                                      + b"]" * 3000 + b"}")
        assert status == 400 and body["error"]["code"] == -32700
        status, _, body = worker.post(rpc(7, "ping"))
        assert status == 200 and body == {"jsonrpc": "2.0", "id": 7, "result": {}}
    finally:
        log = worker.stop()
    assert "Traceback" not in log and "RecursionError" not in log


@pytest.mark.parametrize("args, message", [
    (["--port", "99999"], "argument --port: port must be from 0 to 65535"),
    (["--port", "-1"], "argument --port: port must be from 0 to 65535"),
    (["--port", "http"], "argument --port: expected a port number"),
    (["--tool-timeout-s", "0"], "argument --tool-timeout-s: must be a positive number"),
    (["--tool-timeout-s", "nan"], "argument --tool-timeout-s: must be a positive number"),
    (["--workspace", "/no/such/dir"], "argument --workspace: '/no/such/dir' is not an existing directory"),
])
def test_bad_arguments_exit_2_with_a_message(args, message):
    proc = subprocess.run(WORKER + ["--toolsets", "files", "--transport", "http", *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error: " + message in proc.stderr


def test_workspace_confines_the_file_tools(tmp_path):
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "in.txt").write_text("inside\n")
    (tmp_path / "secret.txt").write_text("outside\n")
    (root / "link").symlink_to(tmp_path / "secret.txt")

    def call(id_, name, arguments):
        return rpc(id_, "tools/call", {"name": name, "arguments": arguments})

    proc, out = _stdio(["--toolsets", "files", "--workspace", str(root)], [
        call(1, "read_file", {"file_path": str(tmp_path / "secret.txt")}),
        call(2, "read_file", {"file_path": "../secret.txt"}),
        call(3, "read_file", {"file_path": "link"}),  # a link inside pointing outside
        call(4, "write_file", {"file_path": str(tmp_path / "new.txt"), "content": "x"}),
        call(5, "read_file", {"file_path": "sub/in.txt"}),  # relative paths resolve against the workspace
        call(6, "list_files", {}),  # the default directory is the workspace
    ])
    assert proc.returncode == 0, proc.stderr
    by_id = {r["id"]: r["result"] for r in out}
    for i in (1, 2, 3, 4):
        assert by_id[i]["isError"] is True and "outside" in by_id[i]["content"][0]["text"], by_id[i]
        assert "outside\n" not in by_id[i]["content"][0]["text"]
    assert not (tmp_path / "new.txt").exists()
    assert by_id[5]["isError"] is False and "inside" in by_id[5]["content"][0]["text"]
    assert by_id[6]["isError"] is False and "sub" in by_id[6]["content"][0]["text"]
    assert f"confined to {root.resolve()}" in proc.stderr

    # without --workspace the same call reads the file (the worker's own permissions)
    _proc, out = _stdio(["--toolsets", "files"], [call(1, "read_file", {"file_path": str(tmp_path / "secret.txt")})])
    assert out[0]["result"]["isError"] is False and "outside" in out[0]["result"]["content"][0]["text"]
