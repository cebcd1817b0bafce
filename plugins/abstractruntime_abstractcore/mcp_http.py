"""The MCP worker's HTTP transport (spec §5.3): a WSGI application (:func:`build_wsgi_app`) served by ``wsgiref``
with one daemon thread per request (:func:`make_http_server`).

Checks, in this order: an ``Origin`` header not in ``state.http_allowed_origins`` -> 403 (-32000; an empty
allowlist rejects every request that has an Origin); with auth, no token configured -> 500 (-32000), a missing or
wrong ``Authorization: Bearer <token>`` (scheme in any case) / ``X-Abstract-Worker-Token`` -> 401 (-32001,
``WWW-Authenticate: Bearer``; tokens compared in constant time); a method other than POST -> 405 (``OPTIONS``
from an allowed Origin is a CORS preflight, 204); a body over ``MAX_BODY_BYTES`` -> 413; a body that is not JSON
(or nested too deep) -> 400 with -32700; a notification -> 200 with -32600. Every JSON-RPC answer is HTTP 200.
Any path is accepted.
"""

from __future__ import annotations

import hmac
import ipaddress
import sys
import time
from socketserver import ThreadingMixIn
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from .mcp_log import RequestLog, http_summary, result_summary, rpc_summary
from .mcp_protocol import (
    INVALID_REQUEST,
    SERVER_ERROR,
    SERVER_NAME,
    UNAUTHORIZED,
    McpWorkerState,
    RpcError,
    _err,
    handle_mcp_request,
    parse_request,
)

MAX_BODY_BYTES = 10 * 1024 * 1024
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            405: "Method Not Allowed", 413: "Payload Too Large", 500: "Internal Server Error"}

Response = Tuple[int, Optional[Dict[str, Any]], Dict[str, str]]


def _token_ok(expected: Optional[str], presented: Optional[str]) -> bool:
    if not expected or presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def _presented_token(environ: Dict[str, Any]) -> Optional[str]:
    auth = str(environ.get("HTTP_AUTHORIZATION") or "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if environ.get("HTTP_X_ABSTRACT_WORKER_TOKEN") is not None:
        return str(environ["HTTP_X_ABSTRACT_WORKER_TOKEN"]).strip()
    return None


def _allowed(state: McpWorkerState) -> frozenset:
    return frozenset(str(o).rstrip("/") for o in state.http_allowed_origins)


def _gate(environ: Dict[str, Any], state: McpWorkerState) -> Optional[Response]:
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and origin.rstrip("/") not in _allowed(state):
        return 403, _err(None, SERVER_ERROR, "Forbidden: invalid Origin"), {}
    if state.http_require_auth:
        if not state.http_auth_token:
            return 500, _err(None, SERVER_ERROR, "Server misconfigured: auth enabled but no token set"), {}
        if not _token_ok(state.http_auth_token, _presented_token(environ)):
            return 401, _err(None, UNAUTHORIZED, "Unauthorized"), {"WWW-Authenticate": "Bearer"}
    return None


def build_wsgi_app(*, state: McpWorkerState, log: Optional[RequestLog] = None) -> Callable[..., Iterable[bytes]]:
    """The worker as a WSGI application (any WSGI server can host it; the worker uses ``wsgiref``)."""
    import json

    log = log or RequestLog(token=state.http_auth_token)
    max_depth = _max_depth()

    def respond(environ: Dict[str, Any]) -> Tuple[Response, str, Optional[Dict[str, Any]]]:
        """``(response, rpc summary, rpc response)``."""
        gated = _gate(environ, state)
        if gated is not None:
            return gated, "", gated[1]
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method == "OPTIONS" and environ.get("HTTP_ORIGIN"):  # preflight from an allowed Origin
            return (204, None, {"Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers":
                                "Content-Type, Authorization, X-Abstract-Worker-Token"}), "", None
        if method != "POST":
            body = _err(None, INVALID_REQUEST, "method not allowed: use POST")
            return (405, body, {"Allow": "POST"}), "", body
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            body = _err(None, INVALID_REQUEST, f"Request body too large or invalid length (limit {MAX_BODY_BYTES})")
            return (413, body, {}), "", body
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            req = parse_request(raw, max_depth=max_depth)
        except RpcError as exc:
            body = _err(None, exc.code, exc.message)
            return (400, body, {}), "", body
        summary = rpc_summary(req)
        log.receiving(f"{http_summary(environ)} {summary}")
        response = handle_mcp_request(req=req if isinstance(req, dict) else {}, state=state)
        if response is None:  # a notification: HTTP always answers
            response = _err(None, INVALID_REQUEST, "Invalid Request: Notification not supported over HTTP")
        return (200, response, {}), summary, response

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        started = time.monotonic()
        (status, body, extra), summary, rpc = respond(environ)
        if not summary:  # refused before the request was read: one receiving line for it too
            log.receiving(http_summary(environ))
        log.returning(f"http status={status} elapsed_s={time.monotonic() - started:.2f} {result_summary(rpc)}")
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else b""
        headers = [("Content-Length", str(len(data)))]
        if body is not None:
            headers.append(("Content-Type", "application/json"))
        headers.extend(extra.items())
        origin = environ.get("HTTP_ORIGIN")
        if origin and origin.rstrip("/") in _allowed(state):
            headers += [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        start_response(f"{status} {_REASONS.get(status, '')}", headers)
        return [data] if data else []

    return app


def _max_depth() -> int:
    from abstractruntime_pluginkit.jsonload import DEFAULT_MAX_DEPTH

    return DEFAULT_MAX_DEPTH


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Handler(WSGIRequestHandler):
    server_version = SERVER_NAME

    def get_environ(self) -> Dict[str, Any]:
        env = super().get_environ()
        env["REMOTE_PORT"] = str(self.client_address[1])
        return env

    def log_message(self, fmt: str, *args: Any) -> None:  # the access line, to stderr, without headers
        sys.stderr.write(f"{SERVER_NAME}: {self.address_string()} {fmt % args}\n")


def make_http_server(state: McpWorkerState, host: str, port: int) -> WSGIServer:
    """A threading ``wsgiref`` server for :func:`build_wsgi_app` (call ``serve_forever()``)."""
    from wsgiref.simple_server import make_server

    return make_server(host, port, build_wsgi_app(state=state), server_class=_Server, handler_class=_Handler)


def is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
