"""The MCP worker's state and its transport-independent JSON-RPC 2.0 dispatcher (spec §5.2, §5.3).

:func:`build_worker_state` selects default toolsets and describes their tools as MCP entries;
:func:`handle_mcp_request` answers one decoded request (``initialize``, ``tools/list``, ``tools/call``, ``ping``)
or returns None for a notification. The transports are in :mod:`.mcp_worker` (stdio) and :mod:`.mcp_http` (HTTP).
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import attrs

from abstractruntime.errors import AbstractRuntimeError

from .errors import McpWorkerError

DEFAULT_PROTOCOL_VERSION = "2025-11-25"
SERVER_NAME = "abstractruntime-mcp-worker"

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
SERVER_ERROR, UNAUTHORIZED = -32000, -32001


def _err(id_: Any, code: int, message: str) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": {"code": code, "message": message}}


class RpcError(AbstractRuntimeError):
    """A JSON-RPC error answer (``code``, ``message``) for the current request."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_request(raw: Any, *, max_depth: int) -> Any:
    """One request body or line, decoded; :class:`RpcError` (-32700) if it is not JSON, or too deep."""
    from abstractruntime_pluginkit.jsonload import loads_bounded

    try:
        return loads_bounded(raw, max_depth=max_depth, what="the request")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, JsonTooDeepError
        raise RpcError(PARSE_ERROR, f"Parse error: {exc}") from None


@attrs.frozen
class McpWorkerState:
    """What a worker serves (immutable): the MCP tool entries, the executor that runs them, the HTTP auth and
    Origin settings, and (our addition) the :class:`~abstractruntime_workspace.WorkspacePolicy` confining the
    tools' path arguments. The token is kept out of ``repr``."""

    tools: List[Dict[str, Any]]
    executor: Any
    http_require_auth: bool = False
    http_auth_token: Optional[str] = attrs.field(default=None, repr=False)
    http_allowed_origins: Tuple[str, ...] = attrs.field(default=(), converter=tuple)
    workspace: Any = attrs.field(default=None, kw_only=True)


def _tool_definition(fn: Any) -> Tuple[str, str, Dict[str, Any]]:
    """``(name, description, properties)`` of a tool function: its AbstractCore ``ToolDefinition``, else the JSON
    schema our spec builder derives from the signature."""
    td = getattr(fn, "_tool_definition", None)
    if td is not None and getattr(td, "name", None):
        return str(td.name), str(getattr(td, "description", "") or ""), copy.deepcopy(dict(td.parameters or {}))
    from .llm_client import json_schema_parameters, tool_spec

    raw = tool_spec(fn)
    props = dict((json_schema_parameters(raw) or {}).get("properties") or {})
    required = set((json_schema_parameters(raw) or {}).get("required") or [])
    for key, schema in props.items():  # mark optional parameters the way a ToolDefinition does
        if key not in required and isinstance(schema, dict):
            schema.setdefault("default", None)
    return str(raw.get("name") or getattr(fn, "__name__", "")), str(raw.get("description") or ""), props


def mcp_tool_entry(fn: Any) -> Dict[str, Any]:
    """The MCP ``tools/list`` entry of a tool: ``{name, description, inputSchema}``; ``required`` lists the
    parameters without a ``default`` (omitted when there is none)."""
    name, description, props = _tool_definition(fn)
    schema: Dict[str, Any] = {"type": "object", "properties": props}
    required = [p for p, spec in props.items() if not (isinstance(spec, Mapping) and "default" in spec)]
    if required:
        schema["required"] = required
    return {"name": name, "description": description.strip() or f"Tool '{name}'", "inputSchema": schema}


def _toolset_tools() -> Dict[str, List[Callable[..., Any]]]:
    from .default_tools import get_default_toolsets

    out: Dict[str, List[Callable[..., Any]]] = {}
    for tid, value in get_default_toolsets().items():
        tools = value.get("tools") if isinstance(value, Mapping) else value
        out[str(tid)] = list(tools or [])
    return out


def known_toolsets() -> List[str]:
    from .default_tools import TOOLSETS

    return [*TOOLSETS, "comms"]


def build_worker_state(*, toolsets: Sequence[str], timeout_s: Optional[float] = None, workspace: Any = None,
                       http_require_auth: bool = False, http_auth_token: Optional[str] = None,
                       http_allowed_origins: Sequence[str] = ()) -> McpWorkerState:
    """The state serving the tools of ``toolsets`` (ids stripped; a later tool of the same name replaces an earlier
    one; entries sorted by name). The executor is a ``MappingToolExecutor`` with ``timeout_s`` (None: unlimited).

    Raises :class:`~.errors.McpWorkerError` (a ``ValueError``) for an unknown toolset id and, with a message
    starting ``No tools selected.``, when nothing is selected (comms tools need their environment switches)."""
    from .tool_executor import MappingToolExecutor

    wanted = [str(t).strip() for t in (toolsets or []) if str(t).strip()]
    unknown = [t for t in wanted if t not in known_toolsets()]
    if unknown:
        raise McpWorkerError(f"Unknown toolset(s) {unknown}; known toolsets: {known_toolsets()}")
    available = _toolset_tools()
    tool_map: Dict[str, Callable[..., Any]] = {}
    entries: Dict[str, Dict[str, Any]] = {}
    for tid in wanted:
        for fn in available.get(tid, []):
            try:
                entry = mcp_tool_entry(fn)
            except Exception:  # a tool that cannot be described is not served
                continue
            tool_map[entry["name"]] = fn
            entries[entry["name"]] = entry
    if not tool_map:
        raise McpWorkerError(
            f"No tools selected. Requested toolsets: {wanted or '(none)'}; available: {sorted(available)} "
            f"(comms tools need ABSTRACT_ENABLE_COMMS_TOOLS or ABSTRACT_ENABLE_EMAIL_TOOLS / "
            f"ABSTRACT_ENABLE_WHATSAPP_TOOLS / ABSTRACT_ENABLE_TELEGRAM_TOOLS set to 1).")
    return McpWorkerState(tools=[entries[n] for n in sorted(entries)],
                          executor=MappingToolExecutor(tool_map, timeout_s=timeout_s),
                          http_require_auth=http_require_auth, http_auth_token=http_auth_token,
                          http_allowed_origins=tuple(http_allowed_origins), workspace=workspace)


def _version() -> Optional[str]:
    try:
        from importlib.metadata import version

        return version("abstractruntime")
    except Exception:
        return None


def handle_mcp_request(*, req: Any, state: McpWorkerState) -> Optional[Dict[str, Any]]:
    """The JSON-RPC response to one decoded request, or None for a notification (no ``id``, or ``id`` null).

    A failing tool is a result with ``isError: true``; only protocol problems are JSON-RPC errors."""
    if not isinstance(req, dict):
        return _err(None, INVALID_REQUEST, "Invalid Request: must be an object")
    id_ = req.get("id")
    if req.get("jsonrpc") != "2.0":
        return _err(id_, INVALID_REQUEST, "Invalid Request: jsonrpc must be '2.0'")
    method = req.get("method")
    if not isinstance(method, str) or not method.strip():
        return _err(id_, INVALID_REQUEST, "Invalid Request: missing method")
    if id_ is None:
        return None  # notification (e.g. notifications/initialized)
    params = req.get("params") if isinstance(req.get("params"), dict) else {}
    try:
        result = _dispatch(method, params, state)
    except RpcError as exc:
        return _err(id_, exc.code, exc.message)
    except Exception as exc:  # never let one request take the worker down
        return _err(id_, SERVER_ERROR, f"Server error: {type(exc).__name__}: {exc}")
    return {"jsonrpc": "2.0", "id": id_, "result": result}


def _text_result(text: str, is_error: bool) -> Dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


def _dispatch(method: str, params: Dict[str, Any], state: McpWorkerState) -> Dict[str, Any]:
    if method == "initialize":
        version = params.get("protocolVersion")
        info: Dict[str, Any] = {"name": SERVER_NAME}
        if _version():
            info["version"] = _version()
        return {"protocolVersion": version if isinstance(version, str) and version else DEFAULT_PROTOCOL_VERSION,
                "capabilities": {"tools": {}}, "serverInfo": info}
    if method == "ping":  # MCP's liveness check (not answered by the reference)
        return {}
    if method == "tools/list":
        return {"tools": copy.deepcopy(state.tools)}
    if method == "tools/call":
        name = params.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RpcError(INVALID_PARAMS, "Invalid params: missing tool name")
        arguments = params.get("arguments") if isinstance(params.get("arguments"), dict) else {}
        if state.workspace is not None:
            from abstractruntime_workspace import WorkspaceError

            from .tool_effect import apply_workspace

            try:
                arguments = apply_workspace(state.workspace, name, arguments)
            except WorkspaceError as exc:
                return _text_result(f"Tool '{name}' refused: {exc}", True)
        answer = state.executor.execute(tool_calls=[{"name": name, "arguments": arguments, "call_id": "mcp"}])
        results = answer.get("results") if isinstance(answer, dict) else None
        out = results[0] if isinstance(results, list) and results else None
        if not isinstance(out, dict) or "success" not in out:
            raise RpcError(SERVER_ERROR, "Tool execution failed (malformed result)")
        if out["success"]:
            value = out.get("output")
            return _text_result(value if isinstance(value, str)
                                else json.dumps(value, ensure_ascii=False, default=str), False)
        return _text_result(str(out.get("error") or "Tool execution failed"), True)
    raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
