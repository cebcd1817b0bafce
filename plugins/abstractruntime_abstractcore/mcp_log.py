"""The MCP worker's request log (spec §5.4): two lines per request on **stderr** (stdout carries the stdio protocol),
``[RECEIVING_COMMANDS] HH:MM:SS <summary>`` and ``[RETURNING_RESULTS] HH:MM:SS <summary>``, coloured only when
stderr is a terminal.

These lines are the worker program's console output (like its start-up line), not library logging. The auth token is
never written: requests are summarised with ``auth=present|missing``, and any occurrence of the configured token in
a line (e.g. inside logged tool arguments) is replaced by ``***``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict, Mapping, Optional, TextIO

RECEIVING = "[RECEIVING_COMMANDS]"
RETURNING = "[RETURNING_RESULTS]"
PREVIEW_CHARS = 500
_COLOURS = {RECEIVING: "\033[38;5;39m", RETURNING: "\033[38;5;208m"}  # blue, orange (256 colours)
_RESET = "\033[0m"


def cut(text: Any, limit: int = PREVIEW_CHARS) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "…"


def _compact(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def rpc_summary(req: Any) -> str:
    """``rpc method=<m> id=<id>`` plus ``name=`` and ``args=`` (``tools/call``) or ``protocolVersion=``."""
    if not isinstance(req, Mapping):
        return f"rpc invalid({type(req).__name__})"
    method = req.get("method")
    parts = [f"rpc method={method} id={_compact(req.get('id'))}"]
    params = req.get("params") if isinstance(req.get("params"), Mapping) else {}
    if method == "tools/call":
        parts.append(f"name={params.get('name')} args={cut(_compact(params.get('arguments') or {}))}")
    elif method == "initialize":
        parts.append(f"protocolVersion={params.get('protocolVersion')}")
    return " ".join(parts)


def result_summary(response: Optional[Mapping[str, Any]]) -> str:
    """What a response says: ``rpc_error code=… message=…``, ``rpc_result tools_count=<n> names=<first 10>``,
    ``rpc_result protocolVersion=…``, ``rpc_result isError=<bool> preview=<first text>``, or
    ``rpc notification(no response)``."""
    if response is None:
        return "rpc notification(no response)"
    error = response.get("error")
    if isinstance(error, Mapping):
        return f"rpc_error code={error.get('code')} message={cut(error.get('message'))}"
    result = response.get("result")
    if not isinstance(result, Mapping):
        return "rpc_result"
    if isinstance(result.get("tools"), list):
        names = [t.get("name") for t in result["tools"] if isinstance(t, Mapping)]
        return f"rpc_result tools_count={len(names)} names={','.join(map(str, names[:10]))}"
    if "protocolVersion" in result:
        return f"rpc_result protocolVersion={result.get('protocolVersion')}"
    if "isError" in result:
        content = result.get("content") or []
        first = content[0].get("text") if content and isinstance(content[0], Mapping) else ""
        return f"rpc_result isError={str(bool(result['isError'])).lower()} preview={cut(first)}"
    return "rpc_result"


class RequestLog:
    """Writes the two lines of each request to ``stream`` (default: the current ``sys.stderr``)."""

    def __init__(self, *, token: Optional[str] = None, stream: Optional[TextIO] = None) -> None:
        self._token = token or None
        self._stream = stream

    def _write(self, kind: str, summary: str) -> None:
        stream = self._stream or sys.stderr
        if self._token:
            summary = summary.replace(self._token, "***")
        line = f"{kind} {time.strftime('%H:%M:%S')} {summary}"
        try:
            if stream.isatty():
                line = f"{_COLOURS[kind]}{line}{_RESET}"
        except (AttributeError, ValueError):
            pass
        try:
            stream.write(line.replace("\n", "\\n") + "\n")
            stream.flush()
        except (OSError, ValueError):  # a closed stderr must not break serving
            pass

    def receiving(self, summary: str) -> None:
        self._write(RECEIVING, summary)

    def returning(self, summary: str) -> None:
        self._write(RETURNING, summary)


def http_summary(environ: Dict[str, Any]) -> str:
    """``http <METHOD> <path?query> from=<addr:port> origin=<o> auth=present|missing content_length=<n> ua=<ua>``
    (never the token)."""
    path = environ.get("PATH_INFO") or "/"
    if environ.get("QUERY_STRING"):
        path += "?" + environ["QUERY_STRING"]
    auth = "present" if environ.get("HTTP_AUTHORIZATION") or environ.get("HTTP_X_ABSTRACT_WORKER_TOKEN") \
        else "missing"
    return (f"http {environ.get('REQUEST_METHOD')} {cut(path, 200)} "
            f"from={environ.get('REMOTE_ADDR')}:{environ.get('REMOTE_PORT', '')} "
            f"origin={environ.get('HTTP_ORIGIN') or '-'} auth={auth} "
            f"content_length={environ.get('CONTENT_LENGTH') or 0} ua={cut(environ.get('HTTP_USER_AGENT') or '-', 200)}")
