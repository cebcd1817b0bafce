"""The LLM_CALL pipeline (integration spec §2.7): from an ``llm_call`` effect payload to the client's
``generate(prompt=, messages=, system_prompt=, tools=, media=, params=)`` call and back to the effect result.

Order: grounding (§2.2) -> trace metadata -> routing (``params._provider``/``_model``) -> prompt cache key ->
validation -> pending media -> input trimming -> output budget -> attachment messages -> structured output ->
media (inlining, artifact files) -> observability snapshot -> the call loop (truncation retries, structured-output
fallback) -> post-processing (JSON from text, metadata) -> context persistence. See docs/abstractcore.md.

The pipeline is one generator, :func:`llm_call_steps`: it yields each request for the client and is sent the
client's result (or thrown its exception). :func:`run_llm_call` drives it with ``llm.generate``; under an asyncio
host (``AsyncRuntime``, docs/asyncio.md) :func:`start_llm_call` prepares it on the calling worker thread and returns
a coroutine that awaits ``llm.agenerate`` on the host's loop, so the LLM calls of many runs overlap there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Any, Awaitable, Dict, Generator, List, Optional, Tuple, Union

from abstractruntime import EffectOutcome
from abstractruntime.logs import get_logger

from .grounding import ground_payload
from .turn_grounding import strip_system_context_header
from .llm_client import tokens_used
from .llm_media import MediaStage, boolish, include_index, merge_pending_media, with_attachment_messages
from .structured_output import (
    looks_like_validation_error,
    normalize_response_schema,
    parse_json_content,
    response_model_for_schema,
)

log = get_logger("abstractruntime.abstractcore")

REQUIRES_INPUT = "llm_call requires payload.prompt or payload.messages"
NO_CLIENT = ("llm_call has no LLM client: use create_local_runtime/create_remote_runtime, attach(runtime, llm=...), "
             "or set [abstractruntime.plugin_options.abstractcore] provider/model (or server_base_url)")
TRUNCATION_REASONS = ("length", "max_tokens", "max_output_tokens")
#: params the handler consumes; they are not forwarded to the client
HANDLER_PARAMS = ("include_session_attachments_index", "max_inline_attachment_bytes",
                  "max_inline_text_attachment_bytes")


def _pos_int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _first_present(payload: Dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if payload.get(key) is not None:
            return payload[key]
    return None


def jsonable(value: Any) -> Any:
    """Values ``json.dumps`` accepts are kept (containers recursed); anything else becomes ``str(value)``."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


def trace_metadata(params: Dict[str, Any], run: Any, node_id: str, idempotency_key: str) -> Dict[str, Any]:
    """The caller's ``params.trace_metadata`` (a copy) with the run context over it."""
    trace = dict(params["trace_metadata"]) if isinstance(params.get("trace_metadata"), dict) else {}
    trace.update({"run_id": run.run_id, "workflow_id": run.workflow_id, "node_id": run.current_node or node_id})
    for key in ("actor_id", "session_id", "parent_run_id"):
        value = getattr(run, key, None)
        if value:
            trace[key] = value
    trace["idempotency_key"] = idempotency_key  # the Idempotency-Key header of HTTP requests
    return trace


def prompt_cache_key(*, params: Dict[str, Any], runtime_ns: Dict[str, Any], run: Any, trace: Dict[str, Any],
                     node_id: str) -> Optional[str]:
    """``_runtime.prompt_cache`` (bool or ``{enabled, namespace, key}``), else env ``ABSTRACTRUNTIME_PROMPT_CACHE``
    / ``ABSTRACTGATEWAY_PROMPT_CACHE``: ``<namespace>:<24 hex>`` of session, provider, model, workflow, node."""
    setting = runtime_ns.get("prompt_cache")
    enabled: Optional[bool] = None
    namespace = "session"
    if isinstance(setting, bool):
        enabled = setting
    elif isinstance(setting, dict):
        key = setting.get("key")
        if isinstance(key, str) and key.strip():
            return key.strip()
        enabled = bool(setting.get("enabled", True))
        if isinstance(setting.get("namespace"), str) and setting["namespace"].strip():
            namespace = setting["namespace"].strip()
    if enabled is None:
        enabled = any(str(os.environ.get(k) or "").strip().lower() in ("1", "true", "yes", "y", "on")
                      for k in ("ABSTRACTRUNTIME_PROMPT_CACHE", "ABSTRACTGATEWAY_PROMPT_CACHE"))
    session_id = run.session_id or trace.get("session_id")
    provider, model = params.get("_provider"), params.get("_model")
    if not (enabled and session_id and provider and model):
        return None
    node = run.current_node or node_id
    raw = f"v1|{session_id}|{str(provider).lower()}|{model}|{run.workflow_id}|{node}"
    return f"{namespace}:{hashlib.sha256(raw.encode('utf-8')).hexdigest()[:24]}"


def output_budget(params: Dict[str, Any], payload: Dict[str, Any], limits: Dict[str, Any]) -> None:
    """Fill ``params.max_output_tokens`` from the payload (``max_output_tokens``, else ``max_out_tokens``) or
    ``_limits.max_output_tokens``, only when params has neither ``max_output_tokens`` nor ``max_tokens``."""
    if "max_output_tokens" in params:
        candidate = params["max_output_tokens"]
    else:
        candidate = params.get("max_tokens")
    if candidate is not None:
        return
    found = _first_present(payload, "max_output_tokens", "max_out_tokens")
    budget = _pos_int(found) if found is not None else None
    budget = budget or _pos_int(limits.get("max_output_tokens"))
    if budget and "max_output_tokens" not in params and "max_tokens" not in params:
        params["max_output_tokens"] = budget


def _trim(messages: Any, payload: Dict[str, Any], runtime_ns: Dict[str, Any], limits: Dict[str, Any]) -> Any:
    if bool(runtime_ns.get("disable_input_trimming")) or not (isinstance(messages, list) and messages):
        return messages
    if payload.get("max_input_tokens") is not None:
        budget = _pos_int(payload["max_input_tokens"])
    else:
        budget = _pos_int(limits.get("max_input_tokens"))
    if not budget:
        return messages
    try:
        from abstractruntime_active_memory.token_budget import trim_messages_to_max_input_tokens

        model = payload.get("model") if isinstance(payload.get("model"), str) else None
        return trim_messages_to_max_input_tokens(messages, max_input_tokens=budget, model=model)
    except Exception:  # trimming is best effort
        return messages


def _last_user_text(messages: Any) -> Optional[str]:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str) and content.strip():
                return content.strip()
    return None


class _Truncation:
    """The truncation contract of step 13 (retries with growing ``max_output_tokens``)."""

    def __init__(self, payload: Dict[str, Any], limits: Dict[str, Any], llm: Any) -> None:
        retry = _first_present(payload, "retry_on_truncation", "no_truncation")
        self.retry = True if retry is None else boolish(retry)
        self.allow = boolish(_first_present(payload, "allow_truncation", "allow_truncated"))
        attempts = _first_present(payload, "max_truncation_attempts", "truncation_max_attempts")
        self.max_attempts = max(1, attempts) if isinstance(attempts, int) and not isinstance(attempts, bool) else 3
        cap = _pos_int(_first_present(payload, "max_output_tokens_cap", "max_truncation_max_output_tokens"))
        self.cap = max(256, cap) if cap else None
        self.limit = _pos_int(limits.get("max_output_tokens"))
        self.llm = llm
        self.attempts: List[Dict[str, Any]] = []

    def _ceiling(self) -> int:
        if self.cap:
            return self.cap
        if self.limit:
            return self.limit
        try:
            caps = self.llm.get_model_capabilities() if callable(getattr(self.llm, "get_model_capabilities", None)) \
                else {}
        except Exception:
            caps = {}
        caps = caps if isinstance(caps, dict) else {}
        return _pos_int(caps.get("max_output_tokens")) or _pos_int(caps.get("max_tokens")) or 1_000_000

    def next_params(self, params: Dict[str, Any]) -> Dict[str, Any]:
        current = _pos_int(params.get("max_output_tokens")) or _pos_int(params.get("max_tokens")) \
            or self.limit or 2048
        bumped = min(max(2 * current, current + 500), self._ceiling())
        out = {k: v for k, v in params.items() if k != "max_tokens"}
        out["max_output_tokens"] = bumped
        return out

    def error(self, finish_reason: Any) -> str:
        budgets = [str(a["max_output_tokens"]) for a in self.attempts if a["max_output_tokens"] is not None]
        listed = ", ".join(budgets[:6]) + (" …" if len(self.attempts) > 6 else "")
        return (f"LLM_CALL output was truncated (finish_reason={finish_reason}). Attempted max_output_tokens: "
                f"{listed}. Increase max_output_tokens/max_out_tokens (or set allow_truncation=true).")


def _is_truncated(result: Any) -> bool:
    reason = result.get("finish_reason") if isinstance(result, dict) else None
    return isinstance(reason, str) and reason.strip().lower() in TRUNCATION_REASONS


#: what the pipeline asks its driver to do: ``client.generate(**call, params=params)`` (or ``agenerate``)
Request = Tuple[Dict[str, Any], Dict[str, Any]]
Steps = Generator[Request, Any, EffectOutcome]


def _call_loop(call: Dict[str, Any], params: Dict[str, Any], payload: Dict[str, Any], truncation: _Truncation
               ) -> Generator[Request, Any, Tuple[Any, Optional[Dict[str, Any]], bool]]:
    """``(result, structured-output fallback info, still truncated)``; client exceptions propagate."""
    fallback_info: Optional[Dict[str, Any]] = None
    attempt = 0
    while True:
        attempt += 1
        used_fallback = False
        try:
            result = yield call, params
        except Exception as exc:
            if "response_model" not in params or not boolish(payload.get("structured_output_fallback")) \
                    or not looks_like_validation_error(exc):
                raise
            log.warning("llm_call_structured_output_fallback", error=str(exc))
            result = yield call, {k: v for k, v in params.items() if k != "response_model"}
            fallback_info = {"used": True, "error": str(exc)}
            used_fallback = True
        truncated = _is_truncated(result)
        truncation.attempts.append({"attempt": attempt, "finish_reason": result.get("finish_reason")
                                    if isinstance(result, dict) else None,
                                    "max_output_tokens": params.get("max_output_tokens"),
                                    "structured_fallback": used_fallback})
        if not truncated or truncation.allow or not truncation.retry or attempt >= truncation.max_attempts:
            return result, fallback_info, truncated
        params = truncation.next_params(params)


def _persist_context(run: Any, node_id: str, user_text: Optional[str], result: Dict[str, Any]) -> None:
    vars_ = run.vars
    context = vars_.get("context")
    if not isinstance(context, dict):
        context = vars_["context"] = {}
    history = context.get("messages")
    if not isinstance(history, list):
        history = context["messages"] = []
    content, data = result.get("content"), result.get("data")
    answer = content.strip() if isinstance(content, str) and content.strip() else (
        json.dumps(data, ensure_ascii=False, indent=2) if isinstance(data, (dict, list)) else "")
    meta = {"kind": "llm_turn", "node_id": node_id}
    for role, text in (("user", user_text or ""), ("assistant", answer)):
        if text:
            history.append({"role": role, "content": text, "metadata": dict(meta)})
    if isinstance(run.output, dict):
        run.output["messages"] = history


def run_llm_call(*, run: Any, effect: Any, llm: Any, artifact_store: Any, node_id: str, idempotency_key: str,
                 grounding: bool = True) -> EffectOutcome:
    """Execute one LLM_CALL attempt (the whole §2.7 pipeline) with ``llm.generate``."""
    steps = llm_call_steps(run=run, effect=effect, llm=llm, artifact_store=artifact_store, node_id=node_id,
                           idempotency_key=idempotency_key, grounding=grounding)
    try:
        call, params = next(steps)
        while True:
            try:
                result = llm.generate(**call, params=params)
            except Exception as exc:
                call, params = steps.throw(exc)
            else:
                call, params = steps.send(result)
    except StopIteration as done:
        return done.value


def start_llm_call(*, run: Any, effect: Any, llm: Any, artifact_store: Any, node_id: str, idempotency_key: str,
                   grounding: bool = True) -> Union[EffectOutcome, Awaitable[EffectOutcome]]:
    """One LLM_CALL attempt for a handler awaited on an asyncio host's loop: the pipeline runs up to the first
    request here (the caller's worker thread: artifact reads, media staging); what is returned -- unless the
    outcome is known already (a payload without prompt, say) -- is a coroutine awaiting ``llm.agenerate``."""
    steps = llm_call_steps(run=run, effect=effect, llm=llm, artifact_store=artifact_store, node_id=node_id,
                           idempotency_key=idempotency_key, grounding=grounding)
    try:
        request = next(steps)
    except StopIteration as done:
        return done.value
    return _finish_async(steps, llm, request)


async def _finish_async(steps: Steps, llm: Any, request: Request) -> EffectOutcome:
    call, params = request
    try:
        while True:
            try:
                result = await llm.agenerate(**call, params=params)
            except Exception as exc:
                call, params = steps.throw(exc)
            else:
                call, params = steps.send(result)
    except StopIteration as done:
        return done.value
    finally:
        steps.close()  # cancelled (the awaiting call went away): the media stage is left now, not at collection


def llm_call_steps(*, run: Any, effect: Any, llm: Any, artifact_store: Any, node_id: str, idempotency_key: str,
                   grounding: bool = True) -> Steps:
    """The pipeline as a generator (see the module doc); its return value is the attempt's outcome."""
    payload = effect.payload if isinstance(effect.payload, dict) else {}
    if grounding:
        ground_payload(payload)  # in place: what the ledger rows show (a no-op when already grounded)
    prompt, messages = payload.get("prompt"), payload.get("messages")
    system_prompt = strip_system_context_header(payload.get("system_prompt"))
    media = payload.get("media")
    tools = payload["tools"] if isinstance(payload.get("tools"), list) and payload["tools"] else None
    params = dict(payload["params"]) if isinstance(payload.get("params"), dict) else {}
    vars_ = run.vars if isinstance(run.vars, dict) else {}
    runtime_ns = vars_.get("_runtime") if isinstance(vars_.get("_runtime"), dict) else {}
    limits = vars_.get("_limits") if isinstance(vars_.get("_limits"), dict) else {}
    trace = params["trace_metadata"] = trace_metadata(params, run, node_id, idempotency_key)
    for key, target in (("provider", "_provider"), ("model", "_model")):
        if isinstance(payload.get(key), str) and payload[key].strip():
            params[target] = payload[key].strip()
    if "prompt_cache_key" not in params:
        key = prompt_cache_key(params=params, runtime_ns=runtime_ns, run=run, trace=trace, node_id=node_id)
        if key:
            params["prompt_cache_key"] = key
    if isinstance(prompt, str) and prompt.strip():
        prompt = prompt.strip()
    elif not (isinstance(messages, list) and messages):
        return EffectOutcome.failed(REQUIRES_INPUT)
    if llm is None:
        return EffectOutcome.failed(NO_CLIENT)
    media = merge_pending_media(media, runtime_ns)
    messages = _trim(messages, payload, runtime_ns, limits)
    output_budget(params, payload, limits)
    try:
        show_index = include_index(params=params, runtime_ns=runtime_ns, payload=payload, media=media, tools=tools)
        messages = with_attachment_messages(messages, media=media, tools=tools, show_index=show_index,
                                            artifact_store=artifact_store, session_id=run.session_id)
    except Exception as exc:  # a derived view: never blocks the call
        log.debug("llm_call_attachment_messages_skipped", error=str(exc))
    user_text = prompt if isinstance(prompt, str) and prompt.strip() else _last_user_text(messages)
    inline_params = {k: params.pop(k) for k in HANDLER_PARAMS if k in params}
    try:
        return (yield from _complete(run=run, llm=llm, payload=payload, params=params, inline_params=inline_params,
                                     prompt=prompt, messages=messages, system_prompt=system_prompt, media=media,
                                     tools=tools, runtime_ns=runtime_ns, limits=limits, artifact_store=artifact_store,
                                     node_id=node_id, user_text=user_text))
    except Exception as exc:
        log.warning("llm_call_failed", run_id=run.run_id, node_id=node_id, error=str(exc))
        return EffectOutcome.failed(str(exc) or type(exc).__name__)


def _complete(*, run: Any, llm: Any, payload: Dict[str, Any], params: Dict[str, Any], inline_params: Dict[str, Any],
              prompt: Any, messages: Any, system_prompt: Any, media: Any, tools: Any, runtime_ns: Dict[str, Any],
              limits: Dict[str, Any], artifact_store: Any, node_id: str, user_text: Optional[str]) -> Steps:
    """Steps 10-16: structured output, media, the call loop, post-processing, context persistence."""
    schema = normalize_response_schema(payload.get("response_schema"))
    if isinstance(runtime_ns.get("audio_policy"), str) and runtime_ns["audio_policy"].strip():
        params.setdefault("audio_policy", runtime_ns["audio_policy"].strip())
    language = runtime_ns.get("stt_language") or runtime_ns.get("audio_language")
    if language and "stt_language" not in params:
        params["stt_language"] = language
    if schema is not None:
        params["response_model"] = response_model_for_schema(schema, payload.get("response_schema_name"))
    has_media = isinstance(media, list) and bool(media)
    stage = MediaStage(artifact_store)
    with stage if has_media else contextlib.nullcontext(stage):
        resolved: Optional[List[str]] = None
        if has_media:
            messages, media = stage.inline_text(messages, list(media), {**params, **inline_params})
            resolved = stage.resolve(media)
            if media:
                params.setdefault("glyph_compression", "never")
        fallback = payload.get("structured_output_fallback")
        call = {"prompt": str(prompt or ""), "messages": messages, "system_prompt": system_prompt,
                "media": resolved if has_media else media, "tools": tools}
        observed = {"prompt": call["prompt"], "messages": messages, "system_prompt": system_prompt,
                    "media": media, "tools": tools, "params": params, "structured_output_fallback": fallback}
        truncation = _Truncation(payload, limits, llm)
        result, fallback_info, truncated = yield from _call_loop(call, params, payload, truncation)
    if truncated and not truncation.allow:
        return EffectOutcome.failed(truncation.error(result.get("finish_reason")))
    result = dict(result) if isinstance(result, dict) else {"content": None, "data": jsonable(result)}
    metadata = dict(result["metadata"]) if isinstance(result.get("metadata"), dict) else {}
    if schema is not None and result.get("data") is None and isinstance(result.get("content"), str) \
            and result["content"].strip():
        try:
            result["data"] = parse_json_content(result["content"])
        except Exception as exc:
            metadata["_structured_output_parse_error"] = str(exc)
    if fallback_info is not None:
        metadata["_structured_output_fallback"] = fallback_info
    if truncated or len(truncation.attempts) > 1 or any(_is_truncated(a) for a in truncation.attempts):
        metadata["_truncation"] = {"attempts": truncation.attempts, "resolved": not truncated}
        observed["truncation_attempts"] = truncation.attempts
    snapshot = dict(metadata["_runtime_observability"]) \
        if isinstance(metadata.get("_runtime_observability"), dict) else {}
    snapshot["llm_generate_kwargs"] = jsonable(observed)
    metadata["_runtime_observability"] = snapshot
    result["metadata"] = metadata
    used = tokens_used(result.get("usage"))
    if used is not None and isinstance(run.vars, dict):
        limits_ns = run.vars.get("_limits")
        if not isinstance(limits_ns, dict):
            limits_ns = run.vars["_limits"] = {}
        limits_ns["estimated_tokens_used"] = used
    context = _first_present(payload, "include_context", "use_context")
    if boolish(context):
        try:
            _persist_context(run, node_id, user_text, result)
        except Exception as exc:  # never fails the call
            log.debug("llm_call_context_not_persisted", error=str(exc))
    return EffectOutcome.completed(result)


__all__ = ["run_llm_call", "start_llm_call", "llm_call_steps", "prompt_cache_key", "output_budget", "trace_metadata",
           "jsonable", "REQUIRES_INPUT"]
