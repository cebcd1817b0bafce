"""The LLM_CALL effect handler (spec §15.2): one attempt with an :class:`~.llm_client.AbstractCoreLLMClient`.

It builds the request from the payload (context messages, input trimming to ``max_input_tokens``, date/time
grounding, ``{"$artifact": id}`` media as temporary files), retries a truncated answer when asked to, checks
structured output, and records the tokens used in ``vars._limits`` and the exchange in ``vars.context`` when the
payload includes the context.
"""

from __future__ import annotations

import json
import locale
import os
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Tuple

from abstractruntime import EffectOutcome
from abstractruntime_pluginkit.jsonload import loads_bounded

from .calls import idempotency_key as _idempotency_key
from .errors import MediaError
from .llm_client import json_safe, tokens_used


def _grounding_prefix() -> str:
    now = datetime.now().astimezone()
    country = os.environ.get("ABSTRACTRUNTIME_COUNTRY") or ""
    if not country:
        try:
            loc = locale.getlocale()[0] or ""
        except (ValueError, TypeError):
            loc = ""
        if "_" in loc:
            country = loc.split("_", 1)[1][:2]
    stamp = now.strftime("%Y-%m-%d %H:%M:%S")
    return f"[{stamp} {country.upper()}]" if country.strip() else f"[{stamp}]"


def _ground(prompt: Any, messages: Optional[List[Dict[str, Any]]]) -> Tuple[Any, Optional[List[Dict[str, Any]]]]:
    prefix = _grounding_prefix()
    if isinstance(prompt, str) and prompt.strip():
        return f"{prefix} {prompt}", messages
    if messages:
        for i in range(len(messages) - 1, -1, -1):
            m = messages[i]
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                messages = list(messages)
                messages[i] = {**m, "content": f"{prefix} {m['content']}"}
                break
    return prompt, messages


def _estimate_tokens(message: Mapping[str, Any]) -> int:
    content = message.get("content")
    text = content if isinstance(content, str) else json.dumps(content, default=str)
    return max(1, len(text) // 4)


def trim_messages(messages: List[Dict[str, Any]], max_input_tokens: Optional[int],
                  extra: str = "") -> List[Dict[str, Any]]:
    """Drop the oldest non-system messages until the estimate fits (the last message is always kept)."""
    if not max_input_tokens or max_input_tokens <= 0:
        return messages
    budget = int(max_input_tokens) - len(extra) // 4
    out = list(messages)
    while len(out) > 1 and sum(_estimate_tokens(m) for m in out) > budget:
        for i, m in enumerate(out[:-1]):
            if m.get("role") != "system":
                del out[i]
                break
        else:
            break
    return out


def _first_int(*values: Any) -> Optional[int]:
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        try:
            return int(v)
        except (TypeError, ValueError):
            continue
    return None


def _resolve_media(media: Any, runtime: Any) -> Any:
    """``{"$artifact": id}`` refs become temporary files (AbstractCore takes paths)."""
    if not isinstance(media, list):
        return media
    out = []
    for item in media:
        if isinstance(item, dict) and "$artifact" in item:
            store = getattr(runtime, "artifact_store", None)
            artifact = store.load(item["$artifact"]) if store is not None else None
            if artifact is None:
                raise MediaError(f"media artifact {item['$artifact']!r} not found")
            import tempfile

            suffix = {"image/png": ".png", "image/jpeg": ".jpg", "application/pdf": ".pdf",
                      "text/plain": ".txt"}.get(getattr(artifact, "content_type", ""), "")
            fd, path = tempfile.mkstemp(prefix="abstractruntime-media-", suffix=suffix)
            with os.fdopen(fd, "wb") as fh:
                fh.write(artifact.content)
            out.append(path)
        else:
            out.append(item)
    return out


def llm_call(call: Any, llm: Any, *, grounding: bool = True) -> EffectOutcome:
    """Execute one LLM_CALL attempt with ``llm`` (an :class:`~.llm_client.AbstractCoreLLMClient`)."""
    payload = call.effect.payload if isinstance(call.effect.payload, dict) else {}
    prompt = payload.get("prompt")
    messages = payload.get("messages")
    has_prompt = isinstance(prompt, str) and bool(prompt.strip())
    has_messages = isinstance(messages, list) and len(messages) > 0
    if not has_prompt and not has_messages:
        return EffectOutcome.failed("llm_call requires payload.prompt or payload.messages")
    if llm is None:
        return EffectOutcome.failed(
            "llm_call has no LLM client: use create_local_runtime/create_remote_runtime, attach(runtime, llm=...), "
            "or set [abstractruntime.plugin_options.abstractcore] provider/model (or server_base_url)")
    run = call.run
    key = _idempotency_key(call)
    params = dict(payload.get("params")) if isinstance(payload.get("params"), dict) else {}
    trace = dict(params.get("trace_metadata")) if isinstance(params.get("trace_metadata"), dict) else {}
    trace.update({k: v for k, v in {"actor_id": run.actor_id, "session_id": run.session_id, "run_id": run.run_id,
                                    "parent_run_id": run.parent_run_id, "node_id": call.node_id,
                                    "idempotency_key": key}.items() if v is not None})
    params["trace_metadata"] = trace
    msgs: Optional[List[Dict[str, Any]]] = [dict(m) for m in messages if isinstance(m, dict)] if has_messages else None
    include_context = bool(payload.get("include_context", payload.get("use_context", False)))
    context_ns = run.vars.get("context") if isinstance(run.vars.get("context"), dict) else None
    if include_context and context_ns is not None and isinstance(context_ns.get("messages"), list):
        msgs = [dict(m) for m in context_ns["messages"] if isinstance(m, dict)] + (msgs or [])
    limits = run.vars.get("_limits") if isinstance(run.vars.get("_limits"), dict) else {}
    max_input = _first_int(payload.get("max_input_tokens"), limits.get("max_input_tokens"))
    max_output = _first_int(payload.get("max_output_tokens"), payload.get("max_out_tokens"),
                            payload.get("max_output_tokens_cap"))
    disable_trim = bool((run.vars.get("_runtime") or {}).get("disable_input_trimming")) \
        if isinstance(run.vars.get("_runtime"), dict) else False
    if msgs and max_input and not disable_trim:
        msgs = trim_messages(msgs, max_input, (prompt or "") if has_prompt else "")
    sent_prompt, sent_messages = (prompt if has_prompt else None), msgs
    if grounding and payload.get("grounding", True) is not False:
        sent_prompt, sent_messages = _ground(sent_prompt, sent_messages)
    try:
        media = _resolve_media(payload.get("media"), call.runtime)
    except Exception as exc:
        return EffectOutcome.failed(f"llm_call media error: {exc}")
    request: Dict[str, Any] = {
        "prompt": sent_prompt, "messages": sent_messages, "system_prompt": payload.get("system_prompt"),
        "tools": payload.get("tools") or None, "media": media or None,
        "provider": payload.get("provider"), "model": payload.get("model"),
        "response_schema": payload.get("response_schema"),
        "response_schema_name": payload.get("response_schema_name"),
        "max_input_tokens": max_input, "max_output_tokens": max_output, "params": params,
        "idempotency_key": key, "trace_metadata": trace,
    }
    retry_truncation = bool(payload.get("retry_on_truncation", False))
    refuse_truncation = bool(payload.get("no_truncation", False)) or payload.get("allow_truncation") is False
    max_truncation_attempts = max(1, _first_int(payload.get("max_truncation_attempts")) or 2)
    attempt = 0
    while True:
        attempt += 1
        try:
            result = llm.generate(**request)
        except Exception as exc:
            return EffectOutcome.failed(f"LLM call failed: {type(exc).__name__}: {exc}")
        truncated = str(result.get("finish_reason") or "").lower() in ("length", "max_tokens")
        if truncated and retry_truncation and attempt < max_truncation_attempts:
            current = request.get("max_output_tokens") or 1024
            request["max_output_tokens"] = int(current) * 2
            continue
        break
    if truncated and (refuse_truncation or retry_truncation):
        return EffectOutcome.failed(
            f"LLM output was truncated (finish_reason={result.get('finish_reason')}) after {attempt} attempt(s); "
            f"raise max_output_tokens or set allow_truncation")
    if payload.get("response_schema") is not None and result.get("data") is None:
        content = result.get("content")
        parsed = None
        if isinstance(content, str):
            try:
                parsed = loads_bounded(content, what="the LLM output")
            except ValueError:
                parsed = None
        if parsed is None and not payload.get("structured_output_fallback", False):
            return EffectOutcome.failed("LLM structured output: the response is not JSON matching response_schema")
        result["data"] = json_safe(parsed)
    used = tokens_used(result.get("usage"))
    if used is not None:  # the run's limits: persisted with this step's checkpoint
        limits_ns = run.vars.get("_limits")
        if not isinstance(limits_ns, dict):
            limits_ns = call.runtime.config.to_limits_dict() if hasattr(call.runtime, "config") else {}
            run.vars["_limits"] = limits_ns
        limits_ns["estimated_tokens_used"] = used
    if include_context:
        context_ns = run.vars.get("context")
        if not isinstance(context_ns, dict):
            context_ns = {}
            run.vars["context"] = context_ns
        history = context_ns.get("messages") if isinstance(context_ns.get("messages"), list) else []
        if has_prompt:
            history.append({"role": "user", "content": prompt})
        history.append({"role": "assistant", "content": result.get("content") or ""})
        context_ns["messages"] = history
    return EffectOutcome.completed(result)


__all__ = ["llm_call", "trim_messages"]
