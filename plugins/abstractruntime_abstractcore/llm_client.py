"""LLM clients (integration spec §2.1-§2.6) and the helpers they share: the result normalisation, tool-call
parsing (:func:`normalize_tool_calls`), response schemas and tool specs.

Every client has ``generate(*, prompt, messages=None, system_prompt=None, tools=None, media=None, params=None) ->
dict`` returning the normalised LLM result (``content, reasoning, data, raw_response, tool_calls, usage, model,
finish_reason, metadata, trace_id, gen_time``). The clients live in :mod:`.local_client` (in-process AbstractCore
providers, MLX serialisation) and :mod:`.remote_client` (an AbstractCore server over HTTP) and are re-exported here,
the reference path ``abstractruntime.integrations.abstractcore.llm_client``.

Retries and timeouts belong to the runtime (its ``EffectPolicy``): providers are created with AbstractCore's
``RetryConfig.single_attempt()`` (and a circuit breaker that never opens), structured output gets one attempt,
and the remote client never retries. One attempt of the effect is one request. The effect's idempotency key
travels with the request as the ``Idempotency-Key`` HTTP header (and ``X-AbstractRuntime-*`` trace headers) for
HTTP-based providers and the remote client.
"""

from __future__ import annotations

import contextvars
import uuid
from typing import Any, Dict, List, Mapping, Optional, Protocol, Tuple, runtime_checkable

from abstractruntime.logs import get_logger

from abstractruntime_pluginkit.jsonload import loads_bounded

from ._isolation import import_abstractcore
from .constants import DEFAULT_LLM_TIMEOUT_S
from .errors import ResponseSchemaError, ToolSpecError

log = get_logger("abstractruntime.abstractcore")

DEFAULT_TIMEOUT_S = DEFAULT_LLM_TIMEOUT_S
logger = log
#: headers added to the provider's HTTP requests for the duration of one generate() call (this thread/context)
_REQUEST_HEADERS: "contextvars.ContextVar[Dict[str, str]]" = contextvars.ContextVar(
    "abstractruntime_request_headers", default={})


@runtime_checkable
class AbstractCoreLLMClient(Protocol):
    """What the LLM_CALL handler needs from a client (an optional ``get_model_capabilities() -> dict`` is probed
    with ``getattr``)."""

    def generate(self, *, prompt: str, messages: Optional[List[Dict[str, Any]]] = None,
                 system_prompt: Optional[str] = None, tools: Optional[List[Dict[str, Any]]] = None,
                 media: Optional[List[Any]] = None, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]: ...


def default_timeout_s() -> float:
    """AbstractCore's configured default timeout, else 7200 s."""
    try:
        config = import_abstractcore("abstractcore.config")
        value = float(config.get_config_manager().get_default_timeout())
        return value if value > 0 else DEFAULT_TIMEOUT_S
    except Exception:
        return DEFAULT_TIMEOUT_S


def default_tool_timeout_s() -> float:
    try:
        config = import_abstractcore("abstractcore.config")
        value = float(config.get_config_manager().get_tool_timeout())
        return value if value > 0 else DEFAULT_TIMEOUT_S
    except Exception:
        return DEFAULT_TIMEOUT_S


def request_headers(idempotency_key: Optional[str], trace: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    """The headers that carry the effect's identity to the server."""
    headers: Dict[str, str] = {}
    if idempotency_key:
        headers["Idempotency-Key"] = str(idempotency_key)
    for key, header in (("run_id", "X-AbstractRuntime-Run-Id"), ("session_id", "X-AbstractRuntime-Session-Id"),
                        ("actor_id", "X-AbstractRuntime-Actor-Id"), ("node_id", "X-AbstractRuntime-Node-Id")):
        value = (trace or {}).get(key)
        if isinstance(value, str) and value:
            headers[header] = value
    return headers


# --- result normalisation ---------------------------------------------------------------------------------------
def json_safe(value: Any, _depth: int = 0) -> Any:
    """A JSON-safe copy (dict keys as strings; pydantic/dataclass/objects converted; else ``str``)."""
    if _depth > 100:
        return "<max_depth>"
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v, _depth + 1) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    for attr in ("model_dump", "to_dict"):
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                return json_safe(fn(), _depth + 1)
            except Exception:
                break
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value), _depth + 1)
    return str(value)


def parse_arguments(value: Any) -> Dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        try:
            parsed = loads_bounded(text, what="tool-call arguments")
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _call_arguments(value: Any) -> Dict[str, Any]:
    """Tool-call arguments as a dict: a dict as is; a string as JSON, else as a Python literal (``true``/``false``/
    ``null`` read as Python's); anything else, or a non-dict result, ``{}``."""
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str) or not value.strip():
        return {}
    try:
        parsed = loads_bounded(value, what="tool-call arguments")
    except ValueError:
        import ast
        import re

        text = re.sub(r"\b(true|false|null)\b",
                      lambda m: {"true": "True", "false": "False", "null": "None"}[m.group(1).lower()],
                      value, flags=re.IGNORECASE)
        try:
            parsed = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            return {}
    return parsed if isinstance(parsed, dict) else {}


def normalize_tool_calls(calls: Any) -> Optional[List[Dict[str, Any]]]:
    """``[{name, arguments: dict, call_id}]`` from AbstractCore's or OpenAI's tool-call shapes (spec §2.6): entries
    without a name are dropped; a non-list or an empty result is None."""
    if not isinstance(calls, list):
        return None
    out: List[Dict[str, Any]] = []
    for raw in calls:
        if isinstance(raw, dict):
            fn = raw.get("function") if isinstance(raw.get("function"), dict) else {}
            name = raw.get("name")
            if not (isinstance(name, str) and name.strip()):
                name = fn.get("name")
            args = raw["arguments"] if "arguments" in raw else fn.get("arguments")
            call_id = raw.get("call_id") or raw.get("id")
        else:
            name, args = getattr(raw, "name", None), getattr(raw, "arguments", None)
            call_id = getattr(raw, "call_id", None)
        name = name.strip() if isinstance(name, str) else ""
        if not name:
            continue
        out.append({"name": name, "arguments": json_safe(_call_arguments(args)),
                    "call_id": str(call_id) if call_id not in (None, "") else None})
    return out or None


_normalize_tool_calls = normalize_tool_calls


def _maybe_parse_tool_calls_from_text(*, content: Any, allowed_tool_names: Any = None, model_name: Any = None,
                                      tool_handler: Any = None) -> Tuple[Optional[List[Dict[str, Any]]], Any]:
    """Deprecated (the LLM_CALL handler does not call it; AbstractCore's providers parse prompted tool calls):
    ``(calls, cleaned content)`` from a text answer through AbstractCore's ``UniversalToolHandler``, filtered by
    ``allowed_tool_names``; ``(None, None)`` when nothing is found."""
    if not isinstance(content, str) or not content.strip():
        return None, None
    try:
        if tool_handler is None:
            handler_mod = import_abstractcore("abstractcore.tools.handler")
            tool_handler = handler_mod.UniversalToolHandler(str(model_name or ""))
        parsed = tool_handler.parse_response(content, mode="prompted")
    except Exception:
        return None, None
    calls = normalize_tool_calls(list(getattr(parsed, "tool_calls", None) or []))
    if calls and allowed_tool_names is not None:
        allowed = {str(n) for n in allowed_tool_names}
        calls = [c for c in calls if c["name"] in allowed] or None
    if not calls:
        return None, None
    return calls, getattr(parsed, "content", None)


def usage_dict(usage: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(usage, Mapping):
        return None
    out = dict(json_safe(usage))
    if "input_tokens" not in out and "prompt_tokens" in out:
        out["input_tokens"] = out["prompt_tokens"]
    if "output_tokens" not in out and "completion_tokens" in out:
        out["output_tokens"] = out["completion_tokens"]
    if "prompt_tokens" not in out and "input_tokens" in out:
        out["prompt_tokens"] = out["input_tokens"]
    if "completion_tokens" not in out and "output_tokens" in out:
        out["completion_tokens"] = out["output_tokens"]
    if out.get("total_tokens") is None:
        try:
            out["total_tokens"] = int(out.get("input_tokens") or 0) + int(out.get("output_tokens") or 0)
        except (TypeError, ValueError):
            pass
    return out


def tokens_used(usage: Any) -> Optional[int]:
    """``usage.input_tokens`` -> ``prompt_tokens`` -> ``total_tokens`` (first non-null), as the kernel's limit."""
    if not isinstance(usage, Mapping):
        return None
    for key in ("input_tokens", "prompt_tokens", "total_tokens"):
        value = usage.get(key)
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


def result_dict(*, content: Any, reasoning: Any = None, data: Any = None, raw_response: Any = None,
                tool_calls: Any = None, usage: Any = None, model: Any = None, finish_reason: Any = None,
                metadata: Optional[Mapping[str, Any]] = None, trace_id: Optional[str] = None,
                gen_time: Any = None) -> Dict[str, Any]:
    trace_id = trace_id or uuid.uuid4().hex
    meta = dict(json_safe(metadata or {}))
    meta.setdefault("trace_id", trace_id)
    return {
        "content": content if content is None or isinstance(content, str) else str(content),
        "reasoning": reasoning if reasoning is None or isinstance(reasoning, str) else str(reasoning),
        "data": json_safe(data),
        "raw_response": json_safe(raw_response),
        "tool_calls": normalize_tool_calls(tool_calls) if tool_calls else None,
        "usage": usage_dict(usage),
        "model": model if model is None or isinstance(model, str) else str(model),
        "finish_reason": finish_reason if finish_reason is None or isinstance(finish_reason, str) else str(finish_reason),
        "metadata": meta,
        "trace_id": trace_id,
        "gen_time": json_safe(gen_time),
    }


# --- structured output ------------------------------------------------------------------------------------------
def normalize_response_schema(schema: Any) -> Optional[Dict[str, Any]]:
    """Unwrap wrappers, parse JSON strings, turn field maps into object schemas (spec §15.2)."""
    if schema is None:
        return None
    if isinstance(schema, str):
        text = schema.strip()
        if not text:
            return None
        try:
            schema = loads_bounded(text, what="response_schema")
        except ValueError as exc:  # not JSON, or nested too deep
            raise ResponseSchemaError(f"response_schema is a string that is not usable JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise ResponseSchemaError(f"response_schema must be a JSON Schema object, got {type(schema).__name__}")
    for wrapper in ("json_schema", "schema"):  # {"type": "json_schema", "json_schema": {"schema": ...}}
        inner = schema.get(wrapper)
        if isinstance(inner, dict) and (wrapper == "schema" or "schema" in inner or "properties" in inner):
            return normalize_response_schema(inner.get("schema", inner) if wrapper == "json_schema" else inner)
    if "properties" in schema and "type" not in schema:
        schema = {"type": "object", **schema}
    if schema.get("type") != "object" and "properties" not in schema:
        # a field map {"name": "string", "age": {"type": "integer"}} -> object schema
        props = {}
        for key, value in schema.items():
            if isinstance(value, str):
                props[key] = {"type": value}
            elif isinstance(value, dict):
                props[key] = value
            else:
                raise ResponseSchemaError(f"response_schema field {key!r} must be a type name or a schema")
        schema = {"type": "object", "properties": props, "required": sorted(props)}
    return schema


def _schema_name(name: Any) -> str:
    import re

    text = re.sub(r"[^A-Za-z0-9_-]", "_", str(name or "").strip())[:64]
    return text or "response"


# --- clients ----------------------------------------------------------------------------------------------------
def _single_attempt_retry_config() -> Any:
    retry = import_abstractcore("abstractcore.core.retry")
    cfg = retry.RetryConfig(max_attempts=1)
    cfg.failure_threshold = 10**9  # the circuit breaker must not refuse calls behind the runtime's back
    return cfg


def _install_header_hook(provider: Any) -> None:
    """Make the provider's HTTP requests carry the headers of the current ``generate`` call (context-local)."""
    original = getattr(provider, "_get_headers", None)
    if not callable(original) or getattr(original, "_abstractruntime_hook", False):
        return

    def _get_headers() -> Dict[str, str]:
        headers = dict(original())
        headers.update(_REQUEST_HEADERS.get())
        return headers

    _get_headers._abstractruntime_hook = True  # type: ignore[attr-defined]
    provider._get_headers = _get_headers


def openai_tool(spec: Any) -> Dict[str, Any]:
    """An OpenAI ``{"type": "function", "function": {...}}`` entry from a tool spec or AbstractCore definition."""
    spec = tool_spec(spec)
    if spec.get("type") == "function" and isinstance(spec.get("function"), dict):
        return spec
    return {"type": "function", "function": {"name": spec.get("name"), "description": spec.get("description", ""),
                                             "parameters": json_schema_parameters(spec)}}


def tool_spec(tool: Any) -> Dict[str, Any]:
    """A JSON tool spec from a dict, an AbstractCore ``ToolDefinition`` or a ``@tool``-decorated function."""
    if isinstance(tool, dict):
        return tool
    definition = getattr(tool, "_tool_definition", tool)
    to_dict = getattr(definition, "to_dict", None)
    if callable(to_dict):
        return dict(json_safe(to_dict()))
    name = getattr(tool, "__name__", None)
    if name:
        return {"name": name, "description": (getattr(tool, "__doc__", "") or "").strip(),
                "parameters": {"type": "object", "properties": {}}}
    raise ToolSpecError(f"Cannot make a tool spec from {type(tool).__name__}")


def json_schema_parameters(spec: Mapping[str, Any]) -> Dict[str, Any]:
    """A JSON-Schema object for a spec's parameters (AbstractCore's ``{arg: schema}`` maps are converted)."""
    params = spec.get("parameters") or spec.get("input_schema") or spec.get("inputSchema") or {}
    if isinstance(params, dict) and params.get("type") == "object":
        return dict(params)
    props: Dict[str, Any] = {}
    for name, schema in (params or {}).items():
        s = dict(schema) if isinstance(schema, dict) else {"type": "string"}
        if "default" in s and s["default"] is None:
            s.pop("default")
        props[str(name)] = s
    required = spec.get("required_args")
    if required is None:
        required = [n for n, s in (params or {}).items() if not (isinstance(s, dict) and "default" in s)]
    return {"type": "object", "properties": props, "required": list(required)}


# the clients live in their own modules; imported last (they use the helpers above)
from .local_client import (  # noqa: E402
    LocalAbstractCoreLLMClient,
    MultiLocalAbstractCoreLLMClient,
    _local_generate_lock,
)
from .remote_client import HttpResponse, HttpxRequestSender, RemoteAbstractCoreLLMClient, RequestSender  # noqa: E402
from .turn_grounding import inject_turn_grounding as _inject_turn_grounding  # noqa: E402,F401

__all__ = ["AbstractCoreLLMClient", "HttpResponse", "RequestSender", "HttpxRequestSender",
           "LocalAbstractCoreLLMClient", "MultiLocalAbstractCoreLLMClient", "RemoteAbstractCoreLLMClient", "logger"]
