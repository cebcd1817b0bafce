"""``abstractruntime-mcp-worker``: selected default toolsets served over MCP (JSON-RPC 2.0) on stdio or HTTP.

Usage::

    abstractruntime-mcp-worker --toolsets files,web                      # stdio (line-delimited JSON)
    ABSTRACT_WORKER_TOKEN=... abstractruntime-mcp-worker --toolsets files --transport http \\
        --http-require-auth --port 8765

Methods: ``initialize``, ``tools/list``, ``tools/call``, ``ping``. A failing tool is a result with
``isError: true``. On stdio, responses are the only thing written to stdout (logs and anything the tools print
go to stderr); notifications get no response. A request that is not JSON, or is nested deeper than
``MAX_JSON_DEPTH`` levels, gets a -32700 parse error and the worker goes on with the next one; a line longer than
``MAX_BODY_BYTES`` characters gets -32600 (it is dropped as it is read).

``--workspace DIR`` confines the path arguments of the file tools (and ``execute_command``'s working directory)
to ``DIR`` (``WorkspacePolicy(root=DIR, mode="workspace_only")``): a path outside is a failed call
(``isError: true``). It checks the paths a tool is given; it is not a sandbox (a command run by
``execute_command`` can still reach outside).

HTTP checks, in this order: an ``Origin`` header not in ``--http-allow-origin`` -> 403 (an empty allowlist
rejects every request that has an Origin); with auth, a missing or wrong ``Authorization: Bearer <token>`` /
``X-Abstract-Worker-Token`` -> 401 (tokens are compared in constant time); only POST (else 405); an unparsable
body -> 400 with -32700; notifications are answered with -32600. The worker refuses to listen on a
non-loopback address without ``--http-require-auth``. It has no TLS: beyond one machine, put it behind a
TLS-terminating reverse proxy, and prefer a per-deployment random token (``openssl rand -hex 32``).
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import ipaddress
import json
import math
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

from abstractruntime.errors import AbstractRuntimeError
from abstractruntime_pluginkit.jsonload import DEFAULT_MAX_DEPTH, loads_bounded

DEFAULT_PROTOCOL_VERSION = "2025-11-25"
DEFAULT_TOKEN_ENV = "ABSTRACT_WORKER_TOKEN"
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_JSON_DEPTH = DEFAULT_MAX_DEPTH  # deeper requests get -32700 before they are parsed
SERVER_NAME = "abstractruntime-mcp-worker"

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
SERVER_ERROR, UNAUTHORIZED = -32000, -32001


def _err(id_: Any, code: int, message: str) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": {"code": code, "message": message}}


def parse_request(raw: Any) -> Any:
    """One request body or line, decoded; :class:`_RpcError` (-32700) if it is not JSON, or too deep."""
    try:
        return loads_bounded(raw, max_depth=MAX_JSON_DEPTH, what="the request")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, JsonTooDeepError
        raise _RpcError(PARSE_ERROR, f"Parse error: {exc}") from None


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("abstractruntime")
    except Exception:
        return "0"


class ToolServer:
    """The JSON-RPC methods over a set of tools (transport-independent)."""

    def __init__(self, tools: Dict[str, Callable[..., Any]], specs: List[Dict[str, Any]], *,
                 timeout_s: Optional[float] = None, output_guard: Optional[Callable[[], Any]] = None,
                 workspace: Any = None) -> None:
        from .tool_executor import MappingToolExecutor

        self.specs = [s for s in specs if s.get("name") in tools]
        self.executor = MappingToolExecutor(tools, timeout_s=timeout_s)
        self.output_guard = output_guard or contextlib.nullcontext
        self.workspace = workspace  # a WorkspacePolicy for the tools' path arguments, or None

    def handle(self, message: Any) -> Optional[Dict[str, Any]]:
        """The response to one decoded message, or None for a notification."""
        if not isinstance(message, dict):
            return _err(None, INVALID_REQUEST, "Invalid Request: expected a JSON object")
        id_ = message.get("id")
        if message.get("jsonrpc") != "2.0":
            return _err(id_, INVALID_REQUEST, "Invalid Request: jsonrpc must be \"2.0\"")
        method = message.get("method")
        if not isinstance(method, str) or not method:
            return _err(id_, INVALID_REQUEST, "Invalid Request: missing method")
        if "id" not in message:
            return None  # notification (e.g. notifications/initialized)
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        try:
            result = self._dispatch(method, params)
        except _RpcError as exc:
            return _err(id_, exc.code, exc.message)
        except Exception as exc:  # never let one request take the worker down
            return _err(id_, SERVER_ERROR, f"Server error: {type(exc).__name__}: {exc}")
        return {"jsonrpc": "2.0", "id": id_, "result": result}

    def _dispatch(self, method: str, params: Dict[str, Any]) -> Dict[str, Any]:
        if method == "initialize":
            version = params.get("protocolVersion")
            return {"protocolVersion": version if isinstance(version, str) and version else DEFAULT_PROTOCOL_VERSION,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": SERVER_NAME, "version": _version()}}
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": [{"name": s["name"], "description": s.get("description", ""),
                               "inputSchema": s.get("parameters") or {"type": "object", "properties": {}}}
                              for s in self.specs]}
        if method == "tools/call":
            name = params.get("name")
            if not isinstance(name, str) or not name.strip():
                raise _RpcError(INVALID_PARAMS, "Invalid params: tools/call requires params.name")
            arguments = params.get("arguments") if isinstance(params.get("arguments"), dict) else {}
            if self.workspace is not None:
                from abstractruntime_workspace import WorkspaceError

                from .tool_effect import apply_workspace

                try:
                    arguments = apply_workspace(self.workspace, name, arguments)
                except WorkspaceError as exc:
                    return {"content": [{"type": "text", "text": f"Tool '{name}' refused: {exc}"}], "isError": True}
            with self.output_guard():
                out = self.executor.execute_one({"name": name, "arguments": arguments, "call_id": "mcp"})
            if not isinstance(out, dict) or "success" not in out:
                raise _RpcError(SERVER_ERROR, "Server error: malformed tool result")
            if out["success"]:
                value = out.get("output")
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
                return {"content": [{"type": "text", "text": text}], "isError": False}
            return {"content": [{"type": "text", "text": str(out.get("error") or "Tool failed")}], "isError": True}
        raise _RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")


class _RpcError(AbstractRuntimeError):
    """A JSON-RPC error answer (``code``, ``message``) for the current request."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- stdio ---------------------------------------------------------------------------------------------------------
def _lines(stdin: TextIO, limit: int) -> Any:
    """The lines of ``stdin``; None for a line longer than ``limit`` characters (read and dropped piecewise, never
    held in memory whole)."""
    while True:
        line = stdin.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line.endswith("\n"):
            yield line
            continue
        while line and not line.endswith("\n"):
            line = stdin.readline(limit + 1)
        yield None


def serve_stdio(server: ToolServer, stdin: TextIO, stdout: TextIO) -> int:
    for line in _lines(stdin, MAX_BODY_BYTES):
        if line is not None and not line.strip():
            continue
        try:
            if line is None:
                raise _RpcError(INVALID_REQUEST, f"Request too large: a line is limited to {MAX_BODY_BYTES} characters")
            message = parse_request(line)
        except _RpcError as exc:
            response: Optional[Dict[str, Any]] = _err(None, exc.code, exc.message)
        else:
            response = server.handle(message)
        if response is not None:
            stdout.write(json.dumps(response, ensure_ascii=False) + "\n")
            stdout.flush()
    return 0


# --- HTTP ----------------------------------------------------------------------------------------------------------
class HttpPolicy:
    def __init__(self, *, token: Optional[str], require_auth: bool, allowed_origins: Sequence[str]) -> None:
        self._token = token.encode("utf-8") if token else None
        self.require_auth = require_auth
        self.allowed_origins = frozenset(o.rstrip("/") for o in allowed_origins)

    def token_ok(self, presented: Optional[str]) -> bool:
        if self._token is None or presented is None:
            return False
        return hmac.compare_digest(presented.encode("utf-8"), self._token)

    @property
    def misconfigured(self) -> bool:
        return self.require_auth and self._token is None


def make_http_server(server: ToolServer, policy: HttpPolicy, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = SERVER_NAME

        def log_message(self, fmt: str, *args: Any) -> None:  # to stderr, without headers (no token leaks)
            sys.stderr.write(f"{SERVER_NAME}: {self.address_string()} {fmt % args}\n")

        def _send(self, status: int, body: Optional[Dict[str, Any]], extra: Optional[Dict[str, str]] = None) -> None:
            data = json.dumps(body).encode("utf-8") if body is not None else b""
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            origin = self.headers.get("Origin")
            if origin and origin.rstrip("/") in policy.allowed_origins:
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Vary", "Origin")
            self.end_headers()
            if data:
                self.wfile.write(data)

        def _gate(self) -> bool:
            origin = self.headers.get("Origin")
            if origin is not None and origin.rstrip("/") not in policy.allowed_origins:
                self._send(403, _err(None, SERVER_ERROR, "Forbidden: Origin not allowed"))
                return False
            if policy.require_auth:
                if policy.misconfigured:
                    self._send(500, _err(None, SERVER_ERROR, "Server error: authentication required but no "
                                                             "token configured"))
                    return False
                presented = None
                auth = self.headers.get("Authorization") or ""
                if auth[:7].lower() == "bearer ":
                    presented = auth[7:].strip()
                elif self.headers.get("X-Abstract-Worker-Token") is not None:
                    presented = self.headers.get("X-Abstract-Worker-Token", "").strip()
                if not policy.token_ok(presented):
                    self._send(401, _err(None, UNAUTHORIZED, "Unauthorized"), {"WWW-Authenticate": "Bearer"})
                    return False
            return True

        def _not_post(self) -> None:
            if self._gate():
                self._send(405, _err(None, INVALID_REQUEST, "Method not allowed: use POST"), {"Allow": "POST"})

        do_GET = do_PUT = do_DELETE = do_PATCH = _not_post  # noqa: N815

        def do_OPTIONS(self) -> None:  # noqa: N802 - CORS preflight for allowed origins only
            origin = self.headers.get("Origin")
            if origin is not None and origin.rstrip("/") in policy.allowed_origins:
                self._send(204, None, {"Access-Control-Allow-Methods": "POST",
                                       "Access-Control-Allow-Headers":
                                           "Content-Type, Authorization, X-Abstract-Worker-Token"})
                return
            self._not_post()

        def do_POST(self) -> None:  # noqa: N802
            if not self._gate():
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self._send(413, _err(None, INVALID_REQUEST, "Request body too large or invalid length"))
                return
            raw = self.rfile.read(length) if length else b""
            try:
                message = parse_request(raw)
            except _RpcError as exc:
                self._send(400, _err(None, exc.code, exc.message))
                return
            response = server.handle(message)
            if response is None:  # a notification: HTTP always answers
                response = _err(None, INVALID_REQUEST, "Invalid Request: notifications are not supported over HTTP")
            self._send(200, response)

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    return httpd


def is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- CLI ------------------------------------------------------------------------------------------------------------
def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 0 to 65535 (0: any free port), got {port}")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _directory(text: str) -> Path:
    path = Path(text).expanduser()
    if not text.strip() or not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not an existing directory")
    return path.resolve()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="abstractruntime-mcp-worker",
                                description="Serve AbstractRuntime's default toolsets over MCP (stdio or HTTP).")
    p.add_argument("--toolsets", required=True, help="comma-separated: files,web,system[,comms]")
    p.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8765, help="TCP port, 0-65535 (0: any free port)")
    p.add_argument("--http-require-auth", action="store_true", help="require a bearer token on every request")
    p.add_argument("--http-auth-token", default=None,
                   help="the token (prefer --http-auth-token-env: command lines are visible to other users)")
    p.add_argument("--http-auth-token-env", default=DEFAULT_TOKEN_ENV,
                   help=f"environment variable holding the token (default {DEFAULT_TOKEN_ENV})")
    p.add_argument("--http-allow-origin", action="append", default=[],
                   help="allowed Origin (repeatable, comma-separated); requests with another Origin get 403")
    p.add_argument("--tool-timeout-s", type=_seconds, default=None, help="per-call tool timeout (best-effort)")
    p.add_argument("--workspace", type=_directory, default=None, metavar="DIR",
                   help="confine the file tools' paths (and execute_command's working directory) to DIR")
    return p


def _fail(message: str) -> int:
    sys.stderr.write(f"abstractruntime-mcp-worker: error: {message}\n")
    return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    toolsets = [t.strip() for t in str(args.toolsets).split(",") if t.strip()]
    if not toolsets:
        return _fail("--toolsets selects no toolset (use e.g. --toolsets files,web)")
    from .default_tools import TOOLSETS, build_default_tool_map, list_default_tool_specs

    unknown = [t for t in toolsets if t not in TOOLSETS and t != "comms"]
    if unknown:
        return _fail(f"unknown toolset(s) {unknown}; known: {[*TOOLSETS, 'comms']}")
    token = args.http_auth_token or (os.environ.get(args.http_auth_token_env) if args.http_auth_token_env else None)
    token = token.strip() if isinstance(token, str) and token.strip() else None
    require_auth = bool(args.http_require_auth or args.http_auth_token)
    if args.transport == "http":
        if require_auth and token is None:
            return _fail(f"--http-require-auth needs a token (--http-auth-token or ${args.http_auth_token_env})")
        if not require_auth and not is_loopback(args.host):
            return _fail(f"refusing to listen on non-loopback address {args.host!r} without --http-require-auth")
    real_stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):  # tool imports may print: keep the stdio channel clean
            tools = build_default_tool_map(toolsets)
            specs = [s for s in list_default_tool_specs(toolsets) if s.get("name") in tools]
    except ModuleNotFoundError as exc:
        return _fail(str(exc))
    if not tools:
        return _fail(f"the selected toolsets {toolsets} provide no tools (comms tools need "
                     f"ABSTRACT_ENABLE_COMMS_TOOLS or a per-family variable)")
    guard = (lambda: contextlib.redirect_stdout(sys.stderr)) if args.transport == "stdio" else None
    workspace = None
    if args.workspace is not None:
        from abstractruntime_workspace import WorkspacePolicy

        workspace = WorkspacePolicy(root=args.workspace, mode="workspace_only")
        sys.stderr.write(f"{SERVER_NAME}: file tool paths are confined to {args.workspace}\n")
    server = ToolServer(tools, specs, timeout_s=args.tool_timeout_s, output_guard=guard, workspace=workspace)
    origins = [o.strip() for value in args.http_allow_origin for o in value.split(",") if o.strip()]
    if args.transport == "stdio":
        sys.stderr.write(f"{SERVER_NAME}: serving {len(tools)} tool(s) from {','.join(toolsets)} on stdio\n")
        sys.stderr.flush()
        return serve_stdio(server, sys.stdin, real_stdout)
    policy = HttpPolicy(token=token, require_auth=require_auth, allowed_origins=origins)
    try:
        httpd = make_http_server(server, policy, args.host, args.port)
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc}")
    host, port = httpd.server_address[:2]
    sys.stderr.write(f"{SERVER_NAME}: serving {len(tools)} tool(s) from {','.join(toolsets)} on "
                     f"http://{host}:{port}/ (auth {'required' if require_auth else 'off'})\n")
    sys.stderr.flush()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
