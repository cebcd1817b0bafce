"""``abstractruntime-mcp-worker``: selected default toolsets served over MCP (JSON-RPC 2.0) on stdio or HTTP.

Usage::

    abstractruntime-mcp-worker --toolsets files,web                      # stdio (line-delimited JSON)
    ABSTRACT_WORKER_TOKEN=... abstractruntime-mcp-worker --toolsets files --transport http \\
        --http-require-auth --port 8765

The reference's public names are here: :class:`McpWorkerState` and :func:`build_worker_state` (what is served),
:func:`handle_mcp_request` (the transport-independent dispatcher, :mod:`.mcp_protocol`), :func:`serve_stdio`,
:func:`build_wsgi_app` (:mod:`.mcp_http`) and :func:`main` (the console script).

Methods: ``initialize``, ``tools/list``, ``tools/call``, ``ping``. A failing tool is a result with
``isError: true``. On stdio, responses are the only thing written to stdout (the request log -- a
``[RECEIVING_COMMANDS]`` and a ``[RETURNING_RESULTS]`` line per request, :mod:`.mcp_log` -- and anything the tools
print go to stderr); notifications get no response. A request that is not JSON, or is nested deeper than
``MAX_JSON_DEPTH`` levels, gets a -32700 parse error and the worker goes on with the next one (the reference
answers nothing); a line longer than ``MAX_BODY_BYTES`` characters gets -32600 (it is dropped as it is read).

``--workspace DIR`` confines the path arguments of the file tools (and ``execute_command``'s working directory)
to ``DIR`` (``WorkspacePolicy(root=DIR, mode="workspace_only")``): a path outside is a failed call
(``isError: true``). It checks the paths a tool is given; it is not a sandbox (a command run by
``execute_command`` can still reach outside).

HTTP checks are listed in :mod:`.mcp_http`. A token given with ``--http-auth-token`` is always enforced; the
worker refuses to listen on a non-loopback address without ``--http-require-auth``. It has no TLS: beyond one
machine, put it behind a TLS-terminating reverse proxy, and prefer a per-deployment random token
(``openssl rand -hex 32``). The token is never logged.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, TextIO

from abstractruntime_pluginkit.cliargs import positive_seconds
from abstractruntime_pluginkit.jsonload import DEFAULT_MAX_DEPTH

from .errors import McpWorkerError
from .mcp_http import MAX_BODY_BYTES, build_wsgi_app, is_loopback, make_http_server
from .mcp_log import RequestLog, result_summary, rpc_summary
from .mcp_protocol import (
    DEFAULT_PROTOCOL_VERSION,
    INVALID_REQUEST,
    SERVER_NAME,
    McpWorkerState,
    RpcError,
    _err,
    build_worker_state,
    handle_mcp_request,
    parse_request,
)

DEFAULT_TOKEN_ENV = "ABSTRACT_WORKER_TOKEN"
MAX_JSON_DEPTH = DEFAULT_MAX_DEPTH  # deeper requests get -32700 before they are parsed

__all__ = ["McpWorkerState", "build_worker_state", "handle_mcp_request", "serve_stdio", "build_wsgi_app", "main",
           "DEFAULT_PROTOCOL_VERSION", "MAX_BODY_BYTES"]


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


def serve_stdio(*, state: McpWorkerState, stdin: Optional[TextIO] = None, stdout: Optional[TextIO] = None) -> None:
    """Answer line-delimited JSON-RPC requests from ``stdin`` (default ``sys.stdin``) on ``stdout`` (default
    ``sys.stdout``), one request at a time, until end of input. Only responses go to ``stdout``: what the tools
    print is sent to stderr, with the request log."""
    import json

    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    log = RequestLog(token=state.http_auth_token)
    for line in _lines(stdin, MAX_BODY_BYTES):
        if line is not None and not line.strip():
            continue
        started = time.monotonic()
        try:
            if line is None:
                raise RpcError(INVALID_REQUEST, f"Request too large: a line is limited to {MAX_BODY_BYTES} characters")
            req = parse_request(line, max_depth=MAX_JSON_DEPTH)
        except RpcError as exc:
            log.receiving(f"stdio rpc unreadable({exc.code})")
            response: Optional[Dict[str, Any]] = _err(None, exc.code, exc.message)
        else:
            log.receiving(f"stdio {rpc_summary(req)}")
            with contextlib.redirect_stdout(sys.stderr):  # keep the protocol channel clean
                response = handle_mcp_request(req=req, state=state)
        ok = response is None or "error" not in response
        log.returning(f"stdio ok={str(ok).lower()} elapsed_s={time.monotonic() - started:.2f} "
                      f"{result_summary(response)}")
        if response is not None:
            stdout.write(json.dumps(response, ensure_ascii=False) + "\n")
            stdout.flush()


# --- CLI ------------------------------------------------------------------------------------------------------------
def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 0 to 65535 (0: any free port), got {port}")
    return port


def _directory(text: str) -> Path:
    path = Path(text).expanduser()
    if not text.strip() or not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not an existing directory")
    return path.resolve()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="abstractruntime-mcp-worker",
                                description="Serve AbstractRuntime's default toolsets over MCP (stdio or HTTP).")
    p.add_argument("--toolsets", default="", help="comma-separated: files,web,system[,comms] (at least one)")
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
    p.add_argument("--tool-timeout-s", type=positive_seconds, default=None, help="per-call tool timeout (best-effort)")
    p.add_argument("--workspace", type=_directory, default=None, metavar="DIR",
                   help="confine the file tools' paths (and execute_command's working directory) to DIR")
    return p


def _fail(message: str) -> int:
    sys.stderr.write(f"abstractruntime-mcp-worker: error: {message}\n")
    return 1


def _failed_to_start(reason: str, toolsets: Sequence[str]) -> int:
    from .mcp_protocol import known_toolsets

    sys.stderr.write(
        "Failed to start MCP worker.\n"
        f"  Reason: {reason}\n"
        f"  Requested toolsets: {','.join(toolsets) or '(none)'}\n"
        f"  Available toolsets: {','.join(known_toolsets())} (comms only with ABSTRACT_ENABLE_COMMS_TOOLS=1 or "
        "ABSTRACT_ENABLE_EMAIL_TOOLS / ABSTRACT_ENABLE_WHATSAPP_TOOLS / ABSTRACT_ENABLE_TELEGRAM_TOOLS)\n"
        "  Example: abstractruntime-mcp-worker --toolsets files,web\n"
        "  Tools come from AbstractCore: pip install 'abstractruntime[abstractcore]'\n")
    return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The console script ``abstractruntime-mcp-worker``: 0 at the end of stdin (stdio) or after Ctrl-C (HTTP),
    1 when the worker cannot start, 2 for bad arguments."""
    args = build_parser().parse_args(argv)
    toolsets = [t.strip() for t in str(args.toolsets).split(",") if t.strip()]
    if not toolsets:
        return _failed_to_start("--toolsets selects no toolset (use e.g. --toolsets files,web)", toolsets)
    env_name = (args.http_auth_token_env or "").strip() or DEFAULT_TOKEN_ENV
    token = args.http_auth_token if isinstance(args.http_auth_token, str) and args.http_auth_token.strip() \
        else os.environ.get(env_name)
    token = token.strip() if isinstance(token, str) and token.strip() else None
    require_auth = bool(args.http_require_auth or (args.http_auth_token and args.http_auth_token.strip()))
    if args.transport == "http":
        if require_auth and token is None:
            return _fail(f"--http-require-auth needs a token (--http-auth-token or ${env_name})")
        if not require_auth and not is_loopback(args.host):
            return _fail(f"refusing to listen on non-loopback address {args.host!r} without --http-require-auth")
    workspace = None
    if args.workspace is not None:
        from abstractruntime_workspace import WorkspacePolicy

        workspace = WorkspacePolicy(root=args.workspace, mode="workspace_only")
    origins = [o.strip() for value in args.http_allow_origin for o in value.split(",") if o.strip()]
    try:
        with contextlib.redirect_stdout(sys.stderr):  # tool imports may print: keep the stdio channel clean
            state = build_worker_state(toolsets=toolsets, timeout_s=args.tool_timeout_s, workspace=workspace,
                                       http_require_auth=require_auth, http_auth_token=token,
                                       http_allowed_origins=origins)
    except McpWorkerError as exc:
        text = str(exc)
        if text.startswith("Unknown toolset"):
            return _failed_to_start(f"unknown toolset(s): {text}", toolsets)
        return _failed_to_start(f"the selected toolsets provide no tools. {text}", toolsets)
    except ModuleNotFoundError as exc:
        return _fail(str(exc))
    if workspace is not None:
        sys.stderr.write(f"{SERVER_NAME}: file tool paths are confined to {args.workspace}\n")
    served = f"{len(state.tools)} tool(s) from {','.join(toolsets)}"
    if args.transport == "stdio":
        sys.stderr.write(f"{SERVER_NAME}: serving {served} on stdio\n")
        sys.stderr.flush()
        serve_stdio(state=state)
        return 0
    try:
        httpd = make_http_server(state, args.host, args.port)
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc}")
    host, port = httpd.server_address[:2]
    sys.stderr.write(f"{SERVER_NAME}: serving {served} on http://{host}:{port}/ "
                     f"(auth {'required' if require_auth else 'off'})\n")
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
