"""LLM clients used by the LLM_CALL handler: in-process AbstractCore providers, or an AbstractCore server over HTTP.

Every client has one method, ``generate(**request) -> dict``, returning the normalised LLM result of spec §15.2
(``content, reasoning, data, raw_response, tool_calls, usage, model, finish_reason, metadata, trace_id,
gen_time``); the request keys are those :func:`abstractruntime_abstractcore.handlers.llm_call` builds.

Retries and timeouts belong to the runtime (its ``EffectPolicy``): providers are created with AbstractCore's
``RetryConfig.single_attempt()`` (and a circuit breaker that never opens), structured output gets one attempt,
and the remote client never retries. One attempt of the effect is one request. The effect's idempotency key
travels with the request as the ``Idempotency-Key`` HTTP header (and ``X-AbstractRuntime-*`` trace headers) for
HTTP-based providers and the remote client.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
import uuid
from typing import Any, Dict, List, Mapping, Optional, Protocol, Tuple, runtime_checkable

from abstractruntime.logs import get_logger

from abstractruntime.errors import ValidationError
from abstractruntime_pluginkit.jsonload import loads_bounded

from ._isolation import guarded, import_abstractcore
from .errors import LLMServerError, ResponseSchemaError, ToolSpecError

log = get_logger("abstractruntime.abstractcore")

DEFAULT_TIMEOUT_S = 7200.0
#: headers added to the provider's HTTP requests for the duration of one generate() call (this thread/context)
_REQUEST_HEADERS: "contextvars.ContextVar[Dict[str, str]]" = contextvars.ContextVar(
    "abstractruntime_request_headers", default={})


@runtime_checkable
class AbstractCoreLLMClient(Protocol):
    def generate(self, **request: Any) -> Dict[str, Any]: ...


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


def normalize_tool_calls(calls: Any) -> List[Dict[str, Any]]:
    """``[{name, arguments: dict, call_id}]`` from AbstractCore's or OpenAI's tool-call shapes."""
    out: List[Dict[str, Any]] = []
    for raw in calls or []:
        if hasattr(raw, "name") and not isinstance(raw, dict):
            raw = {"name": raw.name, "arguments": getattr(raw, "arguments", {}),
                   "call_id": getattr(raw, "call_id", None)}
        if not isinstance(raw, dict):
            continue
        fn = raw.get("function") if isinstance(raw.get("function"), dict) else {}
        name = str(raw.get("name") or fn.get("name") or "").strip()
        args = raw.get("arguments", fn.get("arguments"))
        call_id = raw.get("call_id") or raw.get("id")
        out.append({"name": name, "arguments": json_safe(parse_arguments(args)),
                    "call_id": str(call_id) if call_id else None})
    return out


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


def _messages_for_provider(messages: Any) -> Optional[List[Dict[str, Any]]]:
    if not isinstance(messages, list):
        return None
    return [dict(m) for m in messages if isinstance(m, dict)]


class LocalAbstractCoreLLMClient:
    """One in-process AbstractCore provider (``create_llm(provider, model=model, **llm_kwargs)``), created lazily.

    ``llm_kwargs`` go to ``create_llm`` (e.g. ``base_url``, ``api_key``, ``timeout``); ``retry_config`` defaults to a
    single attempt (see module doc).
    """

    def __init__(self, *, provider: str, model: str, llm_kwargs: Optional[Dict[str, Any]] = None) -> None:
        self.provider = provider
        self.model = model
        self.llm_kwargs = dict(llm_kwargs or {})
        self._llm: Any = None
        self._lock = threading.Lock()

    @property
    def llm(self) -> Any:
        if self._llm is None:
            with self._lock:
                if self._llm is None:
                    factory = import_abstractcore("abstractcore.core.factory")
                    kwargs = dict(self.llm_kwargs)
                    kwargs.setdefault("retry_config", _single_attempt_retry_config())
                    with guarded():
                        llm = factory.create_llm(self.provider, model=self.model, **kwargs)
                    _install_header_hook(llm)
                    self._llm = llm
        return self._llm

    def get_model_capabilities(self) -> Dict[str, Any]:
        caps = getattr(self.llm, "model_capabilities", None)
        return dict(json_safe(caps)) if isinstance(caps, Mapping) else {}

    def generate(self, **request: Any) -> Dict[str, Any]:
        llm = self.llm
        params: Dict[str, Any] = dict(request.get("params") or {})
        trace = dict(request.get("trace_metadata") or {})
        kwargs: Dict[str, Any] = {}
        for key in ("temperature", "seed", "top_p", "stop", "frequency_penalty", "presence_penalty",
                    "prompt_cache_key", "tool_choice", "thinking", "reasoning_effort", "extra_body"):
            if params.get(key) is not None:
                kwargs[key] = params[key]
        max_out = request.get("max_output_tokens") or params.get("max_output_tokens") or params.get("max_tokens")
        if max_out is not None:
            kwargs["max_output_tokens"] = int(max_out)
        if request.get("max_input_tokens") is not None:
            kwargs["max_input_tokens"] = int(request["max_input_tokens"])
        if trace:
            kwargs["trace_metadata"] = trace
        schema = normalize_response_schema(request.get("response_schema"))
        if schema is not None:
            jsf = import_abstractcore("abstractcore.structured.json_schema")
            retry = import_abstractcore("abstractcore.structured.retry")
            kwargs["response_model"] = jsf.response_model_for({"type": "json_schema", "json_schema": {
                "name": _schema_name(request.get("response_schema_name")), "schema": schema}})
            kwargs["retry_strategy"] = retry.FeedbackRetry(max_attempts=1)
        token = _REQUEST_HEADERS.set(request_headers(request.get("idempotency_key"), trace))
        started = time.perf_counter()
        try:
            response = llm.generate(
                prompt=request.get("prompt") or "",
                messages=_messages_for_provider(request.get("messages")),
                system_prompt=request.get("system_prompt"),
                tools=request.get("tools") or None,
                media=request.get("media") or None,
                **kwargs,
            )
        finally:
            _REQUEST_HEADERS.reset(token)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        if schema is not None and not hasattr(response, "content"):
            jsf = import_abstractcore("abstractcore.structured.json_schema")
            data = jsf.instance_of(response)
            return result_dict(content=json.dumps(data, ensure_ascii=False), data=data, model=self.model,
                               finish_reason="stop", metadata={"structured": True}, gen_time=elapsed_ms)
        meta = dict(getattr(response, "metadata", None) or {})
        meta.pop("_provider_request", None)  # carries the whole request payload: not worth a ledger copy
        data = None
        if schema is not None and isinstance(response.content, str):
            try:
                data = loads_bounded(response.content, what="the LLM output")
            except ValueError:
                data = None
        return result_dict(
            content=response.content,
            reasoning=getattr(response, "reasoning", None),
            data=data,
            raw_response=getattr(response, "raw_response", None),
            tool_calls=getattr(response, "tool_calls", None),
            usage=getattr(response, "usage", None),
            model=getattr(response, "model", None) or self.model,
            finish_reason=getattr(response, "finish_reason", None),
            metadata=meta,
            gen_time=getattr(response, "gen_time", None) or elapsed_ms,
        )


class MultiLocalAbstractCoreLLMClient:
    """In-process clients, one per ``(provider, model, base_url)``; effects may override provider and model."""

    def __init__(self, *, provider: str, model: str, llm_kwargs: Optional[Dict[str, Any]] = None) -> None:
        self.provider = provider
        self.model = model
        self.llm_kwargs = dict(llm_kwargs or {})
        self._clients: Dict[Tuple[str, str, Optional[str]], LocalAbstractCoreLLMClient] = {}
        self._lock = threading.Lock()

    def client_for(self, provider: Optional[str] = None, model: Optional[str] = None,
                   base_url: Optional[str] = None) -> LocalAbstractCoreLLMClient:
        provider = (provider or self.provider).strip()
        model = (model or self.model).strip()
        key = (provider, model, base_url)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                kwargs = dict(self.llm_kwargs)
                if base_url:
                    kwargs["base_url"] = base_url
                client = LocalAbstractCoreLLMClient(provider=provider, model=model, llm_kwargs=kwargs)
                self._clients[key] = client
            return client

    def get_model_capabilities(self) -> Dict[str, Any]:
        return self.client_for().get_model_capabilities()

    def generate(self, **request: Any) -> Dict[str, Any]:
        params = request.get("params") or {}
        base_url = params.get("base_url") if isinstance(params.get("base_url"), str) else None
        return self.client_for(request.get("provider"), request.get("model"), base_url).generate(**request)


class RemoteAbstractCoreLLMClient:
    """An AbstractCore server (or any OpenAI-compatible server): ``POST {base}/v1/chat/completions``.

    Non-streaming, one request per call, no retries; ``timeout_s`` is the socket timeout and is also sent in the
    body (AbstractCore's server honours it). ``media`` is not supported (a ``ValidationError``, a ``ValueError``).
    """

    FORWARDED_PARAMS = ("temperature", "max_tokens", "stop", "seed", "frequency_penalty", "presence_penalty",
                        "prompt_cache_key", "top_p")

    def __init__(self, *, server_base_url: str, model: str, headers: Optional[Mapping[str, str]] = None,
                 timeout_s: Optional[float] = None) -> None:
        if not isinstance(server_base_url, str) or not server_base_url.strip():
            raise ValidationError("server_base_url must be a non-empty URL such as http://127.0.0.1:8000")
        self.server_base_url = server_base_url.strip().rstrip("/")
        self.model = model
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s

    @property
    def chat_url(self) -> str:
        base = self.server_base_url
        return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"

    def get_model_capabilities(self) -> Dict[str, Any]:
        return {}

    def _body(self, request: Mapping[str, Any]) -> Dict[str, Any]:
        if request.get("media"):
            raise ValidationError("media is not supported by the remote LLM client (use a local runtime)")
        messages: List[Dict[str, Any]] = []
        if request.get("system_prompt"):
            messages.append({"role": "system", "content": str(request["system_prompt"])})
        messages.extend(_messages_for_provider(request.get("messages")) or [])
        prompt = request.get("prompt")
        if isinstance(prompt, str) and prompt.strip():
            messages.append({"role": "user", "content": prompt})
        model = request.get("model") or self.model
        provider = request.get("provider")
        if isinstance(provider, str) and provider.strip() and "/" not in str(model):
            model = f"{provider.strip()}/{model}"
        body: Dict[str, Any] = {"model": model, "messages": messages, "stream": False}
        params = dict(request.get("params") or {})
        for key in self.FORWARDED_PARAMS:
            if params.get(key) is not None:
                body[key] = params[key]
        max_out = request.get("max_output_tokens")
        if max_out is not None:
            body["max_tokens"] = int(max_out)
        if isinstance(params.get("base_url"), str):
            body["base_url"] = params["base_url"]
        if self.timeout_s is not None:
            body["timeout_s"] = self.timeout_s
        tools = request.get("tools")
        if tools:
            body["tools"] = [openai_tool(t) for t in tools]
        schema = normalize_response_schema(request.get("response_schema"))
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": _schema_name(request.get("response_schema_name")), "schema": schema}}
        return body

    def generate(self, **request: Any) -> Dict[str, Any]:
        import urllib.error
        import urllib.request

        body = self._body(request)
        trace = dict(request.get("trace_metadata") or {})
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.headers}
        headers.update(request_headers(request.get("idempotency_key"), trace))
        for key, header in (("run_id", "X-AbstractCore-Run-Id"), ("session_id", "X-AbstractCore-Session-Id"),
                            ("actor_id", "X-AbstractCore-Actor-Id")):
            if isinstance(trace.get(key), str) and trace[key]:
                headers[header] = trace[key]
        req = urllib.request.Request(self.chat_url, data=json.dumps(body).encode("utf-8"), headers=headers,
                                     method="POST")
        started = time.perf_counter()
        timeout = self.timeout_s if self.timeout_s is not None else DEFAULT_TIMEOUT_S
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - URL chosen by the host
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace")
            try:
                detail = json.loads(detail).get("error", {}).get("message") or detail
            except Exception:
                pass
            raise LLMServerError(f"LLM server returned HTTP {exc.code}: {detail}", status=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:  # timeouts land here too
            reason = getattr(exc, "reason", exc)
            raise LLMServerError(f"LLM server request to {self.chat_url} failed: {reason}") from None
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        try:
            data = loads_bounded(raw, what="the LLM server's response")
        except ValueError as exc:  # not JSON, or nested too deep
            raise LLMServerError(f"LLM server returned a body that is not usable JSON: {exc}") from None
        choices = data.get("choices") or []
        if not choices:
            raise LLMServerError("LLM server returned no choices")
        choice = choices[0] or {}
        message = choice.get("message") or {}
        content = message.get("content")
        parsed = None
        if body.get("response_format"):
            try:
                parsed = loads_bounded(content, what="the LLM output") if isinstance(content, str) else None
            except ValueError:
                parsed = None
        return result_dict(
            content=content,
            reasoning=message.get("reasoning") or message.get("reasoning_content"),
            data=parsed,
            raw_response=data,
            tool_calls=message.get("tool_calls") or choice.get("tool_calls"),
            usage=data.get("usage"),
            model=data.get("model") or body["model"],
            finish_reason=choice.get("finish_reason"),
            metadata={"server": self.server_base_url},
            trace_id=data.get("trace_id") if isinstance(data.get("trace_id"), str) else None,
            gen_time=elapsed_ms,
        )


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

