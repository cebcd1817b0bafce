"""Tool executors (spec §15.4) and the tool-result journal that makes TOOL_CALLS safe to re-execute.

An executor has one method, ``execute(*, tool_calls) -> {"mode": ..., "results"?: [...], "tool_calls"?: [...]}``.
Mode ``executed`` means the results are there; any other mode (``passthrough``, ``approval_required``,
``delegated``) makes the TOOL_CALLS step wait durably for the host.

* :class:`MappingToolExecutor` -- trusted local Python callables (``{name: fn}``).
* :class:`AbstractCoreToolExecutor` -- AbstractCore tools (its global registry, or the tools given).
* :class:`PassthroughToolExecutor` -- never executes: the step waits, the host runs the tools and resumes.
* :class:`ApprovalToolExecutor` -- wraps an executing executor: each call waits for a person's approve/deny
  decision (``Runtime.resolve_tool_approval``), approved calls are then executed, denied ones become error results.
* :class:`McpToolExecutor` / :class:`DelegatingMcpToolExecutor` -- tools of a remote MCP server over HTTP.

Timeouts are best-effort: a call that exceeds ``timeout_s`` is reported as failed, but Python cannot kill a
thread, so the call keeps running in a daemon thread until it returns (use process isolation -- e.g. the MCP
worker -- for tools that must be killable).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, runtime_checkable

from abstractruntime import StashKey
from abstractruntime.errors import ValidationError
from abstractruntime.logs import get_logger
from abstractruntime_pluginkit.jsonload import loads_bounded

from .errors import McpError, ToolTimeoutError
from .llm_client import json_safe, parse_arguments, tool_spec
from .tool_arguments import canonicalize_arguments, missing_required, output_error

log = get_logger("abstractruntime.abstractcore.tools")

logger = log  # the reference's module attribute name


@runtime_checkable
class ToolExecutor(Protocol):
    def execute(self, *, tool_calls: List[Dict[str, Any]]) -> Dict[str, Any]: ...


def error_result(call: Mapping[str, Any], error: str) -> Dict[str, Any]:
    return {"call_id": call.get("call_id") or "", "runtime_call_id": call.get("runtime_call_id"),
            "name": call.get("name") or "", "success": False, "output": None, "error": error}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _runtime_call_id(call: Mapping[str, Any]) -> Optional[str]:
    value = call.get("runtime_call_id")
    text = str(value).strip() if value is not None else ""
    return text or None


def _call_with_timeout(fn: Callable[[], Any], timeout_s: Optional[float]) -> Any:
    if not timeout_s or timeout_s <= 0:
        return fn()
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="abstractruntime-tool", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise ToolTimeoutError(f"Tool execution timed out after {timeout_s}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _tool_name(tool: Any) -> Optional[str]:
    definition = getattr(tool, "_tool_definition", None)
    name = getattr(definition, "name", None) if definition is not None else None
    if not name and not callable(tool):  # a ToolDefinition
        name = getattr(tool, "name", None)
    if not name:
        name = getattr(tool, "__name__", None)
    return str(name).strip() if name else None


class MappingToolExecutor:
    """Executes trusted local Python callables by name."""

    executes = True

    def __init__(self, tool_map: Mapping[str, Callable[..., Any]], *, timeout_s: Optional[float] = None) -> None:
        self.tool_map: Dict[str, Callable[..., Any]] = {}
        for name, fn in dict(tool_map).items():
            if not callable(fn):
                fn = getattr(fn, "function", None)
            if not callable(fn):
                raise ValidationError(f"Tool {name!r} is not callable")
            self.tool_map[str(name)] = fn
        self.timeout_s = timeout_s

    @classmethod
    def from_tools(cls, tools: Iterable[Any], *, timeout_s: Optional[float] = None) -> "MappingToolExecutor":
        mapping: Dict[str, Callable[..., Any]] = {}
        for tool in tools:
            definition = getattr(tool, "_tool_definition", None)
            fn = getattr(definition, "function", None) if definition is not None else None
            if fn is None:
                fn = tool if callable(tool) else getattr(tool, "function", None)
            name = _tool_name(tool)
            if not name:
                raise ValidationError("Tool is missing a name")
            if not callable(fn):
                raise ValidationError(f"Tool '{name}' is not callable")
            if name in mapping:
                raise ValidationError(f"Duplicate tool name '{name}'")
            mapping[name] = fn
        return cls(mapping, timeout_s=timeout_s)

    def set_timeout_s(self, timeout_s: Optional[float]) -> None:
        self.timeout_s = timeout_s

    @property
    def tool_names(self) -> List[str]:
        return sorted(self.tool_map)

    def _lookup(self, name: str) -> Optional[Callable[..., Any]]:
        if name in self.tool_map:
            return self.tool_map[name]
        wanted = _norm(name)
        for key, fn in self.tool_map.items():
            if _norm(key) == wanted:
                return fn
        return None

    def execute_one(self, call: Mapping[str, Any]) -> Dict[str, Any]:
        name = str(call.get("name") or "").strip()
        fn = self._lookup(name)
        if fn is None:
            available = ", ".join(self.tool_names) or "none"
            return error_result(call, f"Unknown tool '{name}' (available tools: {available})")
        kwargs = canonicalize_arguments(fn, call.get("arguments"), name)
        missing = missing_required(fn, kwargs)
        if missing:
            return error_result(call, f"Tool '{name}' is missing required argument(s): {', '.join(missing)}")
        try:
            output = _call_with_timeout(lambda: fn(**kwargs), self.timeout_s)
        except TimeoutError as exc:
            return error_result(call, str(exc))
        except Exception as exc:  # a failing tool is a result, never an exception that kills the run
            return error_result(call, f"{type(exc).__name__}: {exc}")
        failed, error = output_error(output)
        # a failed dict output is kept (it says why); a failed string is the error itself
        kept = json_safe(output) if not failed or isinstance(output, Mapping) else None
        return {"call_id": str(call.get("call_id") or ""), "runtime_call_id": _runtime_call_id(call),
                "name": name, "success": not failed, "output": kept, "error": error}

    def execute(self, *, tool_calls: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {"mode": "executed", "results": [self.execute_one(c) for c in tool_calls]}


class AbstractCoreToolExecutor(MappingToolExecutor):
    """AbstractCore tools: those given (callables decorated with ``@tool`` or ``ToolDefinition``s), else every tool
    of AbstractCore's global registry at execution time."""

    def __init__(self, *, timeout_s: Optional[float] = None, tools: Optional[Sequence[Any]] = None) -> None:
        super().__init__({}, timeout_s=timeout_s)
        self._fixed = tools is not None
        if tools is not None:
            self.tool_map = MappingToolExecutor.from_tools(tools).tool_map

    def _refresh(self) -> None:
        if self._fixed:
            return
        from ._isolation import import_abstractcore

        registry = import_abstractcore("abstractcore.tools.registry").get_registry()
        self.tool_map = {d.name: d.function for d in registry.list_tools() if getattr(d, "function", None)}

    def execute_one(self, call: Mapping[str, Any]) -> Dict[str, Any]:
        if not self._fixed and self._lookup(str(call.get("name") or "")) is None:
            self._refresh()
        return super().execute_one(call)


class PassthroughToolExecutor:
    """Never executes: the step waits (``mode`` is the wait's mode) and the host resumes with the results."""

    executes = False

    def __init__(self, *, mode: str = "passthrough") -> None:
        self.mode = mode

    def execute(self, *, tool_calls: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {"mode": self.mode, "tool_calls": [dict(c) for c in tool_calls]}


class ApprovalToolExecutor:
    """Each tool call waits for a person's decision; approved calls run on ``inner``.

    ``auto_approve`` names tools that run without asking. The step waits with reason ``user`` and
    ``details.mode == "approval_required"``; the host answers with ``runtime.resolve_tool_approval(...)``.
    """

    executes = False
    mode = "approval_required"

    def __init__(self, inner: Any, *, auto_approve: Iterable[str] = ()) -> None:
        if not hasattr(inner, "execute"):
            raise ValidationError("ApprovalToolExecutor needs an executing tool executor (e.g. MappingToolExecutor)")
        self.inner = inner
        self.auto_approve = frozenset(str(n) for n in auto_approve)

    def needs_approval(self, name: str) -> bool:
        return name not in self.auto_approve

    def execute(self, *, tool_calls: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {"mode": self.mode, "wait_reason": "user", "tool_calls": [dict(c) for c in tool_calls]}


# --- MCP ---------------------------------------------------------------------------------------------------------
def mcp_tool_name(server_id: str, tool: str) -> str:
    return f"mcp::{server_id}::{tool}"


class McpHttpClient:
    """A minimal MCP (JSON-RPC 2.0 over HTTP POST) client."""

    def __init__(self, url: str, *, timeout_s: float = 30.0, headers: Optional[Mapping[str, str]] = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})

    def request(self, method: str, params: Optional[Dict[str, Any]] = None) -> Any:
        import urllib.error
        import urllib.request

        body = {"jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": method, "params": params or {}}
        req = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json", **self.headers})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - host-chosen URL
                raw = resp.read() or b"{}"
        except urllib.error.HTTPError as exc:
            raise McpError(f"MCP server returned HTTP {exc.code}") from None
        try:
            data = loads_bounded(raw, what="the MCP server's response")
        except ValueError as exc:  # not JSON, or nested too deep
            raise McpError(f"MCP server {self.url} returned a body that is not usable JSON: {exc}") from None
        if isinstance(data, dict) and data.get("error"):
            err = data["error"]
            raise McpError(f"MCP error {err.get('code')}: {err.get('message')}")
        return data.get("result") if isinstance(data, dict) else None

    def call_tool(self, name: str, arguments: Dict[str, Any]) -> Dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments}) or {}

    def list_tools(self) -> List[Dict[str, Any]]:
        return (self.request("tools/list") or {}).get("tools") or []


class McpToolExecutor:
    """Executes ``mcp::<server_id>::<tool>`` calls on a remote MCP server over HTTP."""

    executes = True

    def __init__(self, *, server_id: str, mcp_url: str, timeout_s: float = 30.0, mcp_client: Any = None) -> None:
        if not isinstance(server_id, str) or not server_id.strip():
            raise ValidationError("McpToolExecutor requires a non-blank server_id")
        if not isinstance(mcp_url, str) or not mcp_url.strip():
            raise ValidationError("McpToolExecutor requires a non-blank mcp_url")
        self.server_id = server_id.strip()
        self.mcp_url = mcp_url.strip()
        self.client = mcp_client or McpHttpClient(self.mcp_url, timeout_s=timeout_s)

    def execute_one(self, call: Mapping[str, Any]) -> Dict[str, Any]:
        name = str(call.get("name") or "")
        tool = name
        if name.startswith("mcp::"):  # mcp::<server>::<tool>; other names are sent as they are
            server, _, rest = name[len("mcp::"):].partition("::")
            if rest:
                if server != self.server_id:
                    return error_result(call, f"MCP tool '{name}' targets server '{server}', "
                                              f"expected '{self.server_id}'")
                tool = rest
        arguments = call.get("arguments")
        try:
            result = self.client.call_tool(name=tool, arguments=dict(arguments) if isinstance(arguments, dict)
                                           else {})
        except Exception as exc:
            return error_result(call, f"{type(exc).__name__}: {exc}")
        output, error = mcp_result_output(result)
        if error is not None:
            return error_result(call, error)
        return {"call_id": str(call.get("call_id") or ""), "runtime_call_id": _runtime_call_id(call), "name": name,
                "success": True, "output": json_safe(output), "error": None}

    def execute(self, *, tool_calls: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {"mode": "executed", "results": [self.execute_one(c) for c in tool_calls]}


def mcp_result_output(result: Any) -> "tuple[Any, Optional[str]]":
    """``(output, error)`` of an MCP ``tools/call`` result: the non-blank text parts joined by newlines (parsed as
    JSON when they are JSON), else the whole result; an error when ``isError`` is true or the text starts with
    ``Error:``, ❌, 🚫, ⏰ or ``Traceback`` (any case)."""
    if not isinstance(result, Mapping):
        return result, None
    parts = [str(c.get("text")).strip() for c in (result.get("content") or [])
             if isinstance(c, Mapping) and c.get("type") == "text" and str(c.get("text") or "").strip()]
    text = "\n".join(parts) if parts else None
    if result.get("isError"):
        return None, text or "MCP tool call reported error"
    if text is None:
        return dict(result), None
    if text.startswith(("Error:", "❌", "🚫", "⏰")) or text.lower().startswith("traceback"):
        return None, text
    try:
        return loads_bounded(text, what="an MCP tool result"), None
    except ValueError:
        return text, None


class DelegatingMcpToolExecutor:
    """Delegates the calls to a job runner speaking MCP: the step waits (reason ``job``)."""

    executes = False

    def __init__(self, *, server_id: str, mcp_url: str, transport: str = "streamable_http",
                 wait_key_factory: Optional[Callable[[], str]] = None) -> None:
        if not isinstance(server_id, str) or not server_id.strip():
            raise ValidationError("DelegatingMcpToolExecutor requires a non-blank server_id")
        if not isinstance(mcp_url, str) or not mcp_url.strip():
            raise ValidationError("DelegatingMcpToolExecutor requires a non-blank mcp_url")
        self.server_id = server_id.strip()
        self.mcp_url = mcp_url.strip()
        self.transport = str(transport or "").strip() or "streamable_http"
        self.wait_key_factory = wait_key_factory

    def execute(self, *, tool_calls: List[Dict[str, Any]]) -> Dict[str, Any]:
        wait_key = self.wait_key_factory() if self.wait_key_factory else f"mcp_job:{uuid.uuid4().hex}"
        return {"mode": "delegated", "wait_reason": "job", "wait_key": wait_key,
                "tool_calls": [dict(c) for c in tool_calls],
                "details": {"protocol": "mcp", "transport": self.transport, "url": self.mcp_url,
                            "server_id": self.server_id, "tool_name_prefix": f"mcp::{self.server_id}::"}}


# --- the journal: completed tool results, durable before the step returns ----------------------------------------
class ToolResultJournal(Protocol):
    def get(self, key: str, runtime_call_id: str) -> Optional[Dict[str, Any]]: ...

    def put(self, key: str, runtime_call_id: str, result: Dict[str, Any], *, run_id: Optional[str] = None) -> None: ...


def journal_entry_id(key: str, runtime_call_id: str) -> str:
    digest = hashlib.sha256(f"{key}\0{runtime_call_id}".encode("utf-8")).hexdigest()[:40]
    return f"toolresult_{digest}"


class MemoryToolResultJournal:
    """Process-local journal (for in-memory stores, which do not survive the process either)."""

    def __init__(self) -> None:
        self._data: Dict[str, Dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, runtime_call_id: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            value = self._data.get(journal_entry_id(key, runtime_call_id))
            return json.loads(json.dumps(value)) if value is not None else None

    def put(self, key: str, runtime_call_id: str, result: Dict[str, Any], *, run_id: Optional[str] = None) -> None:
        with self._lock:
            self._data[journal_entry_id(key, runtime_call_id)] = json.loads(json.dumps(result))


class ArtifactToolResultJournal:
    """Journal entries as JSON artifacts with deterministic ids (``toolresult_<sha256(key, call id)>``).

    With a ``FileArtifactStore`` (written atomically and fsynced) an entry survives a crash of the process."""

    def __init__(self, artifact_store: Any) -> None:
        self.store = artifact_store

    def get(self, key: str, runtime_call_id: str) -> Optional[Dict[str, Any]]:
        artifact = self.store.load(journal_entry_id(key, runtime_call_id))
        if artifact is None:
            return None
        try:
            entry = json.loads(artifact.content.decode("utf-8"))
        except (ValueError, AttributeError):
            return None
        if not isinstance(entry, dict) or entry.get("idempotency_key") != key or \
                entry.get("runtime_call_id") != runtime_call_id:
            return None
        result = entry.get("result")
        return result if isinstance(result, dict) else None

    def put(self, key: str, runtime_call_id: str, result: Dict[str, Any], *, run_id: Optional[str] = None) -> None:
        entry = {"idempotency_key": key, "runtime_call_id": runtime_call_id, "result": result}
        self.store.store(json.dumps(entry, ensure_ascii=False).encode("utf-8"), content_type="application/json",
                         run_id=run_id, tags={"kind": "tool_result", "idempotency_key": key},
                         artifact_id=journal_entry_id(key, runtime_call_id))


#: the process-local journal of a runtime without an artifact store
_MEMORY_JOURNAL: "StashKey[MemoryToolResultJournal]" = StashKey()


def journal_for(runtime: Any) -> ToolResultJournal:
    """The runtime's artifact store (``runtime.artifact_store``, else the files beside its persistent store) as a
    journal; a process-local journal when it has none (in-memory stores)."""
    store = getattr(runtime, "artifact_store", None)
    if store is None:
        try:
            from abstractruntime_artifacts import artifact_store_for
        except ImportError:  # pragma: no cover - the artifacts plugin ships with the kernel
            artifact_store_for = None
        if artifact_store_for is not None:
            try:
                store = artifact_store_for(runtime)
            except Exception:
                store = None
    if store is not None:
        return ArtifactToolResultJournal(store)
    return runtime.stash.setdefault_factory(_MEMORY_JOURNAL, MemoryToolResultJournal)


def tool_specs_of(executor: Any) -> List[Dict[str, Any]]:
    """Best-effort tool specs of an executor's tools (for passing ``tools`` to the LLM)."""
    mapping = getattr(executor, "tool_map", None) or getattr(getattr(executor, "inner", None), "tool_map", None) or {}
    specs = []
    for name, fn in mapping.items():
        try:
            spec = dict(tool_spec(fn))
        except ValueError:
            continue
        spec["name"] = name
        specs.append(spec)
    return specs
