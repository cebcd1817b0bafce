"""The HTTP client of an AbstractCore server (integration spec §2.5): ``POST {base}/v1/chat/completions``, OpenAI
shaped, non-streaming, one request per call (the runtime's ``EffectPolicy`` owns retries).

The transport is injectable (``request_sender``: anything with ``post(url, *, headers, json, timeout)``); the
default, :class:`HttpxRequestSender`, raises :class:`~.errors.LLMServerError` for HTTP errors, timeouts and
unreachable servers. What differs from the reference on purpose is listed in docs/compatibility.md ("The remote
LLM client").
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Protocol, runtime_checkable

from attrs import frozen

from abstractruntime.errors import ValidationError
from abstractruntime.logs import get_logger
from abstractruntime_pluginkit.jsonload import loads_bounded

from .constants import DEFAULT_LLM_TIMEOUT_S
from .errors import LLMServerError, MediaError
from .llm_client import _schema_name, json_safe, normalize_response_schema, openai_tool, request_headers, \
    result_dict
from .local_client import fold_legacy_request
from .turn_grounding import inject_turn_grounding, strip_system_context_header

log = get_logger("abstractruntime.abstractcore")

MEDIA_UNSUPPORTED = ("RemoteAbstractCoreLLMClient does not support media yet (artifact-backed attachments require "
                     "local/hybrid execution).")
_REASONING_KEYS = ("reasoning", "reasoning_content", "thinking", "thinking_content")
_TRACE_ID_HEADERS = ("x-abstractcore-trace-id", "x-trace-id")


@frozen
class HttpResponse:
    """What :class:`HttpxRequestSender` returns: the JSON body and the response headers."""

    body: Dict[str, Any]
    headers: Dict[str, str]


@runtime_checkable
class RequestSender(Protocol):
    def post(self, url: str, *, headers: Dict[str, str], json: Dict[str, Any], timeout: float) -> Any: ...


class HttpxRequestSender:
    """Synchronous ``httpx.post``; an HTTP error status, a timeout or a connection failure raises
    :class:`~.errors.LLMServerError` (the server's error message in its text, ``status`` set for HTTP errors)."""

    def post(self, url: str, *, headers: Dict[str, str], json: Dict[str, Any], timeout: float) -> HttpResponse:
        import httpx

        try:
            resp = httpx.post(url, headers=headers, json=json, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise LLMServerError(f"LLM server request to {url} timed out after {timeout}s") from exc
        except httpx.HTTPError as exc:
            raise LLMServerError(f"LLM server request to {url} failed: {exc}") from exc
        if not 200 <= resp.status_code < 300:
            detail = resp.text
            try:
                parsed = loads_bounded(resp.content, what="the LLM server's error")
                error = parsed.get("error") if isinstance(parsed, dict) else None
                detail = (error.get("message") if isinstance(error, dict) else error) or detail
            except ValueError:
                pass
            raise LLMServerError(f"LLM server returned HTTP {resp.status_code}: {detail}", status=resp.status_code)
        try:
            body = loads_bounded(resp.content, what="the LLM server's response")
        except ValueError as exc:  # not JSON, or nested too deep
            raise LLMServerError(f"LLM server returned a body that is not usable JSON: {exc}") from None
        return HttpResponse(body=body if isinstance(body, dict) else {"data": body}, headers=dict(resp.headers))


def _unwrap(response: Any) -> tuple:
    """``(body, headers)`` of whatever the sender returned."""
    if isinstance(response, dict):
        return response, {}
    body, headers = getattr(response, "body", None), getattr(response, "headers", None)
    if isinstance(body, dict) and isinstance(headers, Mapping):
        return body, dict(headers)
    if callable(getattr(response, "json", None)) and headers is not None:
        data = response.json()
        return (data if isinstance(data, dict) else {"data": data}), dict(headers)
    return {"data": json_safe(response)}, {}


def _trace_id(headers: Mapping[str, Any]) -> Optional[str]:
    lowered = {str(k).lower(): v for k, v in headers.items()}
    for name in _TRACE_ID_HEADERS:
        value = lowered.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _first_reasoning(message: Mapping[str, Any]) -> Any:
    value = None
    for key in _REASONING_KEYS:
        value = message.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return value


class RemoteAbstractCoreLLMClient:
    """An AbstractCore server (or any OpenAI-compatible server) at ``server_base_url``."""

    def __init__(self, *, server_base_url: str, model: str, timeout_s: Optional[float] = None,
                 headers: Optional[Dict[str, str]] = None, request_sender: Optional[RequestSender] = None) -> None:
        if not isinstance(server_base_url, str) or not server_base_url.strip():
            raise ValidationError("server_base_url must be a non-empty URL such as http://127.0.0.1:8000")
        self.server_base_url = server_base_url.strip().rstrip("/")
        self.model = model
        self.timeout_s = float(timeout_s) if timeout_s is not None else DEFAULT_LLM_TIMEOUT_S
        self.headers = dict(headers or {})
        self.request_sender: Any = request_sender if request_sender is not None else HttpxRequestSender()

    @property
    def chat_url(self) -> str:
        base = self.server_base_url
        return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"

    def get_model_capabilities(self) -> Dict[str, Any]:
        return {}

    def _headers(self, trace: Any, idempotency_key: Optional[str]) -> Dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.headers}
        configured = {k.lower() for k in self.headers}
        if isinstance(trace, Mapping) and trace:
            text = json.dumps(json_safe(trace), ensure_ascii=False, separators=(",", ":"))
            if not text.isascii():  # an HTTP header value must be ASCII (httpx refuses others)
                text = json.dumps(json_safe(trace), separators=(",", ":"))
            headers["X-AbstractCore-Trace-Metadata"] = text
            for key, name in (("actor_id", "X-AbstractCore-Actor-Id"), ("session_id", "X-AbstractCore-Session-Id"),
                              ("run_id", "X-AbstractCore-Run-Id"), ("parent_run_id", "X-AbstractCore-Parent-Run-Id")):
                if trace.get(key) is not None and name.lower() not in configured:
                    headers[name] = str(trace[key])
        for name, value in request_headers(idempotency_key, trace if isinstance(trace, Mapping) else None).items():
            headers.setdefault(name, value)
        return headers

    def _body(self, *, prompt: Any, messages: Any, system_prompt: Any, tools: Any, params: Dict[str, Any],
              schema: Any) -> Dict[str, Any]:
        msgs: List[Dict[str, Any]] = []
        if isinstance(system_prompt, str) and system_prompt:
            msgs.append({"role": "system", "content": system_prompt})
        given = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
        msgs.extend(given)
        last_user = next((m.get("content") for m in reversed(given) if m.get("role") == "user"), None)
        if isinstance(prompt, str) and prompt.strip() and prompt != last_user:
            msgs.append({"role": "user", "content": prompt})  # the reference drops it when messages are given
        model = params.pop("_model", None)
        model = model.strip() if isinstance(model, str) and model.strip() else self.model
        provider = params.pop("_provider", None)
        if isinstance(provider, str) and provider.strip() and "/" not in str(model):
            model = f"{provider.strip()}/{model}"
        body: Dict[str, Any] = {"model": model, "messages": msgs, "stream": False, "timeout_s": self.timeout_s}
        base_url = params.pop("base_url", None)
        if base_url:
            body["base_url"] = base_url
        cache_key = params.get("prompt_cache_key")
        if isinstance(cache_key, str) and cache_key.strip():
            body["prompt_cache_key"] = cache_key.strip()
        if params.get("temperature") is not None:
            try:
                body["temperature"] = float(params["temperature"])
            except (TypeError, ValueError):
                pass
        if params.get("seed") is not None:
            try:
                seed = int(params["seed"])
                if seed >= 0:
                    body["seed"] = seed
            except (TypeError, ValueError):
                pass
        for key in ("max_tokens", "stop", "frequency_penalty", "presence_penalty", "top_p"):
            if params.get(key) is not None:
                body[key] = params[key]
        if body.get("max_tokens") is None and params.get("max_output_tokens") is not None:
            body["max_tokens"] = params["max_output_tokens"]
        if tools is not None:
            body["tools"] = [openai_tool(t) for t in tools]
        response_model = params.get("response_model")
        if schema is None and response_model is not None and hasattr(response_model, "model_json_schema"):
            schema, name = response_model.model_json_schema(), getattr(response_model, "__name__", None)
        else:
            name = params.get("_response_schema_name")
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": _schema_name(name),
                                                                               "schema": schema}}
        return body

    def generate(self, *, prompt: str = "", messages: Optional[List[Dict[str, Any]]] = None,
                 system_prompt: Optional[str] = None, tools: Optional[List[Dict[str, Any]]] = None,
                 media: Optional[List[Any]] = None, params: Optional[Dict[str, Any]] = None,
                 **legacy: Any) -> Dict[str, Any]:
        if media:
            raise MediaError(MEDIA_UNSUPPORTED)
        params = dict(params or {})
        idempotency_key, schema = fold_legacy_request(params, legacy)
        params["_response_schema_name"] = legacy.get("response_schema_name")
        trace = params.pop("trace_metadata", None)
        headers = self._headers(trace, idempotency_key)
        system_prompt = strip_system_context_header(system_prompt)
        prompt, messages = inject_turn_grounding(prompt if prompt is not None else "", messages)
        body = self._body(prompt=prompt, messages=messages, system_prompt=system_prompt, tools=tools, params=params,
                          schema=normalize_response_schema(schema))
        url = self.chat_url
        response = self.request_sender.post(url, headers=headers, json=body, timeout=self.timeout_s)
        data, response_headers = _unwrap(response)
        trace_id = _trace_id(response_headers) or (data.get("trace_id") if isinstance(data.get("trace_id"), str)
                                                   else None)
        meta: Dict[str, Any] = {"_provider_request": {"url": url, "payload": body}}
        if trace_id:
            meta["trace_id"] = trace_id
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
            content = message.get("content")
            parsed = None
            if body.get("response_format") and isinstance(content, str):
                try:
                    parsed = loads_bounded(content, what="the LLM output")
                except ValueError:
                    parsed = None
            return result_dict(
                content=content, reasoning=_first_reasoning(message), data=parsed, raw_response=data,
                tool_calls=message.get("tool_calls"), usage=data.get("usage"), model=data.get("model"),
                finish_reason=choice.get("finish_reason"), metadata=meta, trace_id=trace_id)
        except Exception as exc:  # an answer that is not a chat completion: keep it whole in ``data``
            log.warning("llm_server_answer_not_a_completion", url=url, error=f"{type(exc).__name__}: {exc}")
            return result_dict(content=None, data=data, raw_response=data, model=data.get("model"),
                               metadata=meta, trace_id=trace_id)


__all__ = ["HttpResponse", "RequestSender", "HttpxRequestSender", "RemoteAbstractCoreLLMClient", "MEDIA_UNSUPPORTED"]
