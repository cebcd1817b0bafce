"""In-process LLM clients (integration spec §2.3, §2.4, §8.2): one AbstractCore provider, or a cache of them routed
per call by ``params._provider`` / ``params._model``.

Differences from the reference, on purpose: the provider is created on first use (not in the constructor) with a
single-attempt ``RetryConfig`` (the runtime's ``EffectPolicy`` owns retries), and the HTTP requests of
HTTP-based providers carry the ``Idempotency-Key`` / ``X-AbstractRuntime-*`` headers of the call.

``agenerate`` (same arguments and result as ``generate``) uses the provider's async generation (AbstractCore's
``BaseProvider.agenerate``: native for HTTP providers, a thread otherwise); the ``LLM_CALL`` handler uses it under an
``AsyncRuntime`` (docs/asyncio.md). A provider caches its async HTTP client on the first loop that uses it: use
``agenerate`` of one client from one event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, AsyncIterator, Dict, Iterator, List, Mapping, Optional, Tuple

from abstractruntime.errors import InvalidTypeError
from abstractruntime.logs import get_logger

from ._isolation import guarded, import_abstractcore
from .llm_client import (
    _REQUEST_HEADERS,
    _install_header_hook,
    _schema_name,
    _single_attempt_retry_config,
    json_safe,
    normalize_response_schema,
    request_headers,
    result_dict,
)
from .turn_grounding import inject_turn_grounding, strip_system_context_header

log = get_logger("abstractruntime.abstractcore")

_TRUTHY = ("1", "true", "yes", "y", "on")
_REASONING_KEYS = ("reasoning", "reasoning_content", "thinking", "thinking_content")

# --- MLX serialisation (§8.2) -----------------------------------------------------------------------------------
_LOCAL_LOCKS: Dict[Tuple[str, str], threading.Lock] = {}
_LOCAL_LOCKS_GUARD = threading.Lock()


def _local_generate_lock(*, provider: str, model: str) -> Optional[threading.Lock]:
    """The process-wide lock serialising generation on one MLX model (``("mlx", model)``); None for other
    providers. The first client of a key logs a warning."""
    if str(provider or "").strip().lower() != "mlx":
        return None
    key = ("mlx", str(model or "").strip())
    with _LOCAL_LOCKS_GUARD:
        lock = _LOCAL_LOCKS.get(key)
        if lock is None:
            lock = _LOCAL_LOCKS[key] = threading.Lock()
            log.warning("mlx_generation_serialised", model=key[1],
                        detail="concurrent runs in this process generate on this MLX model one at a time")
        return lock


# --- request preparation ----------------------------------------------------------------------------------------
def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUTHY
    return bool(value)


def drop_internal_messages(messages: Any) -> Optional[List[Dict[str, Any]]]:
    """``messages`` without non-dicts and without ``system`` messages starting with ``Recent tool activity``
    (internal notes that must not reach the model); an emptied list becomes None."""
    if not isinstance(messages, list):
        return None
    out = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if m.get("role") == "system" and isinstance(content, str) and content.lstrip().startswith(
                "Recent tool activity"):
            continue
        out.append(dict(m))
    return out or None


def fold_legacy_request(params: Dict[str, Any], legacy: Mapping[str, Any]) -> Tuple[Optional[str], Any]:
    """Fold the request keys of this package's earlier handler into ``params`` (``provider``/``model`` ->
    ``_provider``/``_model``, ``trace_metadata``, ``max_output_tokens``, ``max_input_tokens``); returns
    ``(idempotency_key, response_schema)``."""
    unknown = set(legacy) - {"provider", "model", "trace_metadata", "max_output_tokens", "max_input_tokens",
                             "idempotency_key", "response_schema", "response_schema_name"}
    if unknown:
        raise InvalidTypeError(f"generate() got unexpected keyword arguments {sorted(unknown)}; the keywords are prompt, "
                        f"messages, system_prompt, tools, media and params")
    for key, target in (("provider", "_provider"), ("model", "_model")):
        value = legacy.get(key)
        if isinstance(value, str) and value.strip():
            params.setdefault(target, value.strip())
    if isinstance(legacy.get("trace_metadata"), Mapping):
        trace = dict(params.get("trace_metadata") or {}) if isinstance(params.get("trace_metadata"), Mapping) else {}
        trace.update(legacy["trace_metadata"])
        params["trace_metadata"] = trace
    for key in ("max_output_tokens", "max_input_tokens"):
        if legacy.get(key) is not None and params.get(key) is None:
            if key == "max_output_tokens" and params.get("max_tokens") is not None:
                continue
            params[key] = int(legacy[key])
    key = legacy.get("idempotency_key")
    if key is None and isinstance(params.get("trace_metadata"), Mapping):
        key = params["trace_metadata"].get("idempotency_key")
    return (str(key) if key else None), legacy.get("response_schema")


def _stream_flag(params: Dict[str, Any]) -> bool:
    value = params.pop("stream", None)
    if value is None:
        value = params.pop("streaming", None)
    return _truthy(value) if value is not None else False


# --- response normalisation -------------------------------------------------------------------------------------
def _reasoning_from(obj: Any) -> Optional[str]:
    if not isinstance(obj, Mapping):
        return None
    for choice in obj.get("choices") or []:
        if not isinstance(choice, Mapping):
            continue
        for part in ("message", "delta"):
            msg = choice.get(part)
            if isinstance(msg, Mapping):
                for key in _REASONING_KEYS:
                    value = msg.get(key)
                    if isinstance(value, str) and value.strip():
                        return value.strip()
    return None


def _from_dict(resp: Mapping[str, Any]) -> Dict[str, Any]:
    out = dict(json_safe(resp))
    meta = out.get("metadata") if isinstance(out.get("metadata"), dict) else {}
    if not out.get("trace_id") and isinstance(meta.get("trace_id"), str):
        out["trace_id"] = meta["trace_id"]
    if not out.get("reasoning"):
        reasoning = meta.get("reasoning")
        out["reasoning"] = reasoning if isinstance(reasoning, str) and reasoning.strip() else (
            _reasoning_from(out.get("raw_response")) or _reasoning_from(out.get("raw")) or _reasoning_from(out))
    return out


def _from_object(resp: Any) -> Dict[str, Any]:
    meta = getattr(resp, "metadata", None)
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    raw = getattr(resp, "raw_response", None)
    reasoning = getattr(resp, "reasoning", None) or meta.get("reasoning") or _reasoning_from(raw)
    gen_time = getattr(resp, "gen_time", None)
    return {"content": getattr(resp, "content", None), "reasoning": reasoning, "data": None, "raw_response": raw,
            "tool_calls": getattr(resp, "tool_calls", None), "usage": getattr(resp, "usage", None),
            "model": getattr(resp, "model", None), "finish_reason": getattr(resp, "finish_reason", None),
            "metadata": meta, "trace_id": meta.get("trace_id"),
            "gen_time": gen_time if isinstance(gen_time, (int, float)) and not isinstance(gen_time, bool) else None}


class _Stream:
    """The result of a streamed generation, built chunk by chunk (sync or async)."""

    def __init__(self, started: float) -> None:
        self.started, self.parts, self.ttft = started, [], None  # type: float, List[str], Optional[float]
        self.out: Dict[str, Any] = {"content": None, "reasoning": None, "data": None, "raw_response": None,
                                    "tool_calls": None, "usage": None, "model": None, "finish_reason": None,
                                    "metadata": {}, "trace_id": None}

    def add(self, chunk: Any) -> None:
        out = self.out
        part = _from_dict(chunk) if isinstance(chunk, Mapping) else _from_object(chunk)
        if isinstance(part.get("content"), str):
            self.parts.append(part["content"])
        for key in ("tool_calls", "usage"):
            if part.get(key) is not None:
                out[key] = part[key]
        if part.get("finish_reason") is not None:
            out["finish_reason"] = str(part["finish_reason"])
        if not out["model"] and isinstance(part.get("model"), str) and part["model"].strip():
            out["model"] = part["model"]
        meta = part.get("metadata") if isinstance(part.get("metadata"), Mapping) else {}
        out["metadata"].update(meta)
        out["trace_id"] = out["trace_id"] or part.get("trace_id")
        out["reasoning"] = out["reasoning"] or part.get("reasoning")
        if self.ttft is None and (part.get("content") or part.get("tool_calls")):
            self.ttft = round((time.perf_counter() - self.started) * 1000, 1)

    def finish(self) -> Dict[str, Any]:
        out = self.out
        timing = out["metadata"].get("_timing")
        given = timing.get("ttft_ms") if isinstance(timing, Mapping) else None
        out["content"] = "".join(self.parts) if self.parts else None
        out["ttft_ms"] = given if given is not None else self.ttft
        out["gen_time"] = round((time.perf_counter() - self.started) * 1000, 1)
        return out


def _consume_stream(chunks: Iterator[Any], started: float) -> Dict[str, Any]:
    stream = _Stream(started)
    for chunk in chunks:
        stream.add(chunk)
    return stream.finish()


async def _consume_astream(chunks: AsyncIterator[Any], started: float) -> Dict[str, Any]:
    stream = _Stream(started)
    async for chunk in chunks:
        stream.add(chunk)
    return stream.finish()


def _normalised(response: Any, stream: bool) -> Optional[Dict[str, Any]]:
    """A provider's (non-streamed) response as a dict; None for a stream (consumed by the caller)."""
    if stream and (hasattr(response, "__next__") or hasattr(response, "__anext__")):
        return None
    if isinstance(response, Mapping):
        return _from_dict(response)
    if hasattr(response, "model_dump") and not hasattr(response, "content"):  # structured output
        return {"content": None, "data": response.model_dump(), "finish_reason": None}
    return _from_object(response)


def _synthesised_request(*, provider: str, model: str, prompt: str, messages: Optional[List[Dict[str, Any]]],
                         system_prompt: Any, tools: Any, stream: bool, params: Mapping[str, Any]) -> Dict[str, Any]:
    msgs: List[Dict[str, Any]] = []
    if isinstance(system_prompt, str) and system_prompt:
        msgs.append({"role": "system", "content": system_prompt})
    msgs.extend(messages or [])
    last_user = next((m.get("content") for m in reversed(messages or []) if m.get("role") == "user"), None)
    if prompt and prompt != last_user:
        msgs.append({"role": "user", "content": prompt})
    payload: Dict[str, Any] = {"model": model, "messages": msgs, "stream": bool(stream)}
    if tools:
        payload["tools"] = tools
    payload["params"] = json_safe(dict(params)) or {}
    return json_safe({"transport": "local", "provider": provider, "model": model, "payload": payload})


class LocalAbstractCoreLLMClient:
    """One in-process AbstractCore provider: ``create_llm(provider, model=model, **llm_kwargs)`` (created on first
    use; ``enable_tracing`` defaults to True and ``max_traces`` to 50). Provider ``mlx`` generates under a
    process-wide lock per model."""

    def __init__(self, *, provider: str, model: str, llm_kwargs: Optional[Dict[str, Any]] = None) -> None:
        self.provider = provider
        self.model = model
        kwargs = dict(llm_kwargs or {})
        kwargs.setdefault("enable_tracing", True)
        if kwargs.get("enable_tracing"):
            kwargs.setdefault("max_traces", 50)
        self.llm_kwargs = kwargs
        self._llm: Any = None
        self._lock = threading.Lock()
        self._generate_lock = _local_generate_lock(provider=provider, model=model)

    @property
    def llm(self) -> Any:
        """The AbstractCore provider instance."""
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
        """AbstractCore's capabilities of the model (``{"max_tokens": 32768}`` when they cannot be read)."""
        try:
            detection = import_abstractcore("abstractcore.architectures.detection")
            caps = detection.get_model_capabilities(self.model)
            return dict(json_safe(caps)) if isinstance(caps, Mapping) else {"max_tokens": 32768}
        except Exception:
            return {"max_tokens": 32768}

    def _request(self, *, prompt: str, messages: Optional[List[Dict[str, Any]]], system_prompt: Optional[str],
                 tools: Optional[List[Dict[str, Any]]], media: Optional[List[Any]], params: Optional[Dict[str, Any]],
                 legacy: Dict[str, Any]) -> Dict[str, Any]:
        """The provider call's arguments (``_generate`` / ``_agenerate``) from a ``generate`` call's."""
        params = dict(params or {})
        idempotency_key, schema = fold_legacy_request(params, legacy)
        system_prompt = strip_system_context_header(system_prompt)
        prompt, grounded = inject_turn_grounding(prompt if prompt is not None else "", messages)
        msgs = drop_internal_messages(grounded)
        stream = _stream_flag(params)
        for key in ("base_url", "_provider", "_model"):
            params.pop(key, None)
        schema = normalize_response_schema(schema)
        if schema is not None and params.get("response_model") is None:
            jsf = import_abstractcore("abstractcore.structured.json_schema")
            params["response_model"] = jsf.response_model_for({"type": "json_schema", "json_schema": {
                "name": _schema_name(legacy.get("response_schema_name")), "schema": schema}})
        if params.get("response_model") is not None and "retry_strategy" not in params:
            retry = import_abstractcore("abstractcore.structured.retry")
            params["retry_strategy"] = retry.FeedbackRetry(max_attempts=1)  # the runtime owns retries
        trace = params.get("trace_metadata") if isinstance(params.get("trace_metadata"), Mapping) else None
        return dict(prompt=str(prompt or ""), messages=msgs, system_prompt=system_prompt, tools=tools or None,
                    media=media or None, stream=stream, params=params,
                    headers=request_headers(idempotency_key, trace))

    def generate(self, *, prompt: str = "", messages: Optional[List[Dict[str, Any]]] = None,
                 system_prompt: Optional[str] = None, tools: Optional[List[Dict[str, Any]]] = None,
                 media: Optional[List[Any]] = None, params: Optional[Dict[str, Any]] = None,
                 **legacy: Any) -> Dict[str, Any]:
        request = self._request(prompt=prompt, messages=messages, system_prompt=system_prompt, tools=tools,
                                media=media, params=params, legacy=legacy)
        lock = self._generate_lock
        if lock is not None:
            lock.acquire()
        try:
            return self._generate(**request)
        finally:
            if lock is not None:
                lock.release()

    async def agenerate(self, *, prompt: str = "", messages: Optional[List[Dict[str, Any]]] = None,
                        system_prompt: Optional[str] = None, tools: Optional[List[Dict[str, Any]]] = None,
                        media: Optional[List[Any]] = None, params: Optional[Dict[str, Any]] = None,
                        **legacy: Any) -> Dict[str, Any]:
        """``generate`` with the provider's async generation; an MLX model (serialised by a thread lock) and the
        first call (which creates the provider) run on a thread, never blocking the loop."""
        if self._generate_lock is not None:
            return await asyncio.to_thread(self.generate, prompt=prompt, messages=messages,
                                           system_prompt=system_prompt, tools=tools, media=media, params=params,
                                           **legacy)
        request = self._request(prompt=prompt, messages=messages, system_prompt=system_prompt, tools=tools,
                                media=media, params=params, legacy=legacy)
        llm = self._llm if self._llm is not None else await asyncio.to_thread(lambda: self.llm)
        token = _REQUEST_HEADERS.set(request.pop("headers"))
        started = time.perf_counter()
        try:
            response = await llm.agenerate(prompt=request["prompt"], messages=request["messages"],
                                           system_prompt=request["system_prompt"], tools=request["tools"],
                                           media=request["media"], stream=request["stream"], **request["params"])
            out = _normalised(response, request["stream"])
            if out is None:
                out = await _consume_astream(response, started) if hasattr(response, "__anext__") \
                    else _consume_stream(response, started)
        finally:
            _REQUEST_HEADERS.reset(token)
        return self._result(out, started, **request)

    def _generate(self, *, prompt: str, messages: Optional[List[Dict[str, Any]]], system_prompt: Any, tools: Any,
                  media: Any, stream: bool, params: Dict[str, Any], headers: Dict[str, str]) -> Dict[str, Any]:
        llm = self.llm
        token = _REQUEST_HEADERS.set(headers)
        started = time.perf_counter()
        try:
            response = llm.generate(prompt=prompt, messages=messages, system_prompt=system_prompt, tools=tools,
                                    media=media, stream=stream, **params)
            out = _normalised(response, stream)
            if out is None:
                out = _consume_stream(response, started)
        finally:
            _REQUEST_HEADERS.reset(token)
        return self._result(out, started, prompt=prompt, messages=messages, system_prompt=system_prompt,
                            tools=tools, media=media, stream=stream, params=params)

    def _result(self, out: Dict[str, Any], started: float, *, prompt: str, messages: Any, system_prompt: Any,
                tools: Any, media: Any, stream: bool, params: Dict[str, Any]) -> Dict[str, Any]:
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        meta = dict(out.get("metadata") or {}) if isinstance(out.get("metadata"), Mapping) else {}
        if "_provider_request" not in meta:
            try:
                meta["_provider_request"] = _synthesised_request(
                    provider=self.provider, model=self.model, prompt=prompt, messages=messages,
                    system_prompt=system_prompt, tools=tools, stream=stream, params=params)
            except Exception:  # a capture must never fail the call
                pass
        result = result_dict(
            content=out.get("content"), reasoning=out.get("reasoning"), data=out.get("data"),
            raw_response=out.get("raw_response"), tool_calls=out.get("tool_calls"), usage=out.get("usage"),
            model=out.get("model") or self.model, finish_reason=out.get("finish_reason"), metadata=meta,
            trace_id=out.get("trace_id") if isinstance(out.get("trace_id"), str) else None,
            gen_time=out.get("gen_time") if out.get("gen_time") is not None else elapsed_ms)
        if out.get("ttft_ms") is not None:
            result["ttft_ms"] = out["ttft_ms"]
        return result


class MultiLocalAbstractCoreLLMClient:
    """In-process clients, one per ``(provider lower-cased, model)``, built with the shared ``llm_kwargs``; a call
    chooses its client with ``params._provider`` / ``params._model`` (else the defaults)."""

    def __init__(self, *, provider: str, model: str, llm_kwargs: Optional[Dict[str, Any]] = None) -> None:
        self.provider = str(provider or "").strip().lower()
        self.model = str(model or "").strip()
        self.llm_kwargs = dict(llm_kwargs or {})
        self._clients: Dict[Tuple[str, str], LocalAbstractCoreLLMClient] = {}
        self._cache_lock = threading.Lock()
        self._default = self._client(self.provider, self.model)

    @property
    def _llm(self) -> Any:
        """The default provider instance (the reference's attribute)."""
        return self._default.llm

    def _client(self, provider: str, model: str) -> LocalAbstractCoreLLMClient:
        key = (provider, model)
        with self._cache_lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = LocalAbstractCoreLLMClient(
                    provider=provider, model=model, llm_kwargs=dict(self.llm_kwargs))
            return client

    def _route(self, provider: Any, model: Any) -> LocalAbstractCoreLLMClient:
        p = provider.strip().lower() if isinstance(provider, str) and provider.strip() else self.provider
        m = model.strip() if isinstance(model, str) and model.strip() else self.model
        return self._client(p, m)

    def get_provider_instance(self, *, provider: str, model: str) -> Any:
        """The provider instance a call with these ``_provider``/``_model`` would use (blank: the default)."""
        return self._route(provider, model).llm

    def list_loaded_clients(self) -> List[Tuple[str, str]]:
        with self._cache_lock:
            return list(self._clients)

    def get_model_capabilities(self) -> Dict[str, Any]:
        return self._default.get_model_capabilities()

    def generate(self, *, prompt: str = "", messages: Optional[List[Dict[str, Any]]] = None,
                 system_prompt: Optional[str] = None, tools: Optional[List[Dict[str, Any]]] = None,
                 media: Optional[List[Any]] = None, params: Optional[Dict[str, Any]] = None,
                 **legacy: Any) -> Dict[str, Any]:
        params = dict(params or {})
        provider = params.pop("_provider", None) or legacy.pop("provider", None)
        model = params.pop("_model", None) or legacy.pop("model", None)
        return self._route(provider, model).generate(prompt=prompt, messages=messages, system_prompt=system_prompt,
                                                     tools=tools, media=media, params=params, **legacy)

    async def agenerate(self, *, prompt: str = "", messages: Optional[List[Dict[str, Any]]] = None,
                        system_prompt: Optional[str] = None, tools: Optional[List[Dict[str, Any]]] = None,
                        media: Optional[List[Any]] = None, params: Optional[Dict[str, Any]] = None,
                        **legacy: Any) -> Dict[str, Any]:
        """``generate`` with the routed provider's async generation (``LocalAbstractCoreLLMClient.agenerate``)."""
        params = dict(params or {})
        provider = params.pop("_provider", None) or legacy.pop("provider", None)
        model = params.pop("_model", None) or legacy.pop("model", None)
        return await self._route(provider, model).agenerate(prompt=prompt, messages=messages,
                                                            system_prompt=system_prompt, tools=tools, media=media,
                                                            params=params, **legacy)


__all__ = ["LocalAbstractCoreLLMClient", "MultiLocalAbstractCoreLLMClient", "drop_internal_messages"]
