"""The ``llm_call`` node (VF §2.6, VAM §2): pins and configuration, structured-output schemas, memory sources.

One pass of the node resolves its inputs and builds the pending ``LLM_CALL`` dict (:func:`llm_pending`). When memory
pins ask for recall, the pre-call effects of :func:`~abstractruntime_visualflow.memory_sources.schedule_memory_recall`
run first (each re-enters the node); the final pass injects the recalled material and the run context
(:func:`inject_into_call`) and emits the ``LLM_CALL`` with ``result_key = _temp.effects.<node_id>``.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, List, Optional

from abstractruntime.logs import get_logger
from abstractruntime.models import StepPlan

from ..executor import effect_plan
from ..memory_sources import (KG_HEADER, MEMORY_KEYS, coerce_bool, expand_memory_pin, kg_active_memory_text,
                              memory_sources, recall_fingerprint, recalled_span_messages, schedule_memory_recall,
                              use_fingerprint, memory_bucket)
from ..nodetypes import LAST_OUTPUT_BASE, VisualNodeType
from ..schema_refs import response_schema

log = get_logger("abstractruntime.visualflow")
MISSING_CONFIG = "Missing provider or model configuration"
AGENT_SCHEMA_ONLY_TOOLS = ("ask_user", "recall_memory", "inspect_vars", "remember", "compact_memory")


# --- tools ---------------------------------------------------------------------------------------------------------
def known_tool_specs() -> Dict[str, Dict[str, Any]]:
    """Tool specs a name on ``llm_call`` can resolve to: AbstractCore's default tools (with ``open_attachment``) and,
    when AbstractAgent is installed, its schema-only tools. Empty without AbstractCore."""
    specs: Dict[str, Dict[str, Any]] = {}
    try:
        from abstractruntime.integrations.abstractcore.default_tools import list_default_tool_specs
        for spec in list_default_tool_specs():
            if isinstance(spec, dict) and isinstance(spec.get("name"), str):
                specs.setdefault(spec["name"], spec)
    except ImportError:  # AbstractCore (or its integration plugin) is optional
        pass
    try:
        from abstractagent.logic import builtins as agent_builtins  # type: ignore  # optional
    except ImportError:
        return specs
    for name in AGENT_SCHEMA_ONLY_TOOLS:
        tool = getattr(agent_builtins, f"{name.upper()}_TOOL", None)
        if tool is not None and name not in specs:
            specs[name] = {"name": name, "description": str(getattr(tool, "description", "") or ""),
                           "parameters": dict(getattr(tool, "parameters", None) or {})}
    return specs


def resolve_tools(value: Any) -> List[Dict[str, Any]]:
    """ToolSpec dicts (all elements dicts) stripped to ``{name, description, parameters}``; else names resolved
    against :func:`known_tool_specs` (unknown names dropped); anything else ``[]``."""
    if not isinstance(value, list):
        return []
    if value and all(isinstance(x, dict) for x in value):
        out = []
        for spec in value:
            name = spec.get("name")
            name = name.strip() if isinstance(name, str) else ""
            if name:
                params = spec.get("parameters")
                out.append({"name": name, "description": str(spec.get("description") or ""),
                            "parameters": dict(params) if isinstance(params, dict) else {}})
        return out
    names = [x.strip() for x in value if isinstance(x, str) and x.strip()]
    if not names:
        return []
    known = known_tool_specs()
    return [copy.deepcopy(known[n]) for n in names if n in known]


# --- pins ----------------------------------------------------------------------------------------------------------
def _pick(inputs: Dict[str, Any], pins: tuple, cfg: Dict[str, Any], keys: tuple) -> Any:
    for source, names in ((inputs, pins), (cfg, keys)):
        for name in names:
            if source.get(name) is not None:
                return source[name]
    return None


def _positive_int(value: Any) -> Optional[int]:
    if value is None or isinstance(value, bool):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return n if n > 0 else None


def _number(value: Any, kind: type) -> Any:
    if value is None or isinstance(value, bool):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        return None


def clean_attachments(value: Any) -> List[Any]:
    """Dict entries copied, non-blank strings stripped, others dropped."""
    out: List[Any] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            out.append(dict(item))
        elif isinstance(item, str) and item.strip():
            out.append(item.strip())
    return out


def _leading_system(messages: List[Dict[str, Any]]) -> int:
    lead = 0
    while lead < len(messages) and messages[lead].get("role") == "system":
        lead += 1
    return lead


def llm_pending(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    """The pending ``LLM_CALL`` dict of one pass (VAM §2.1), with its ``type``; raises
    :class:`~abstractruntime_visualflow.schema_refs.SchemaRefError` for an unresolvable schema ``$ref``."""
    cfg = ctx.config if isinstance(ctx.config, dict) else {}
    prompt = inputs.get("prompt")
    prompt = "" if prompt is None else str(prompt)
    provider = inputs["provider"] if isinstance(inputs.get("provider"), str) else cfg.get("provider") or ""
    model = inputs["model"] if isinstance(inputs.get("model"), str) else cfg.get("model") or ""
    provider, model = str(provider), str(model)
    tools = resolve_tools(inputs["tools"] if "tools" in inputs else cfg.get("tools"))
    include = _pick(inputs, ("include_context", "use_context"), cfg, ("include_context", "use_context"))
    temperature = _number(cfg.get("temperature", 0.7), float)
    temperature = 0.7 if temperature is None else temperature
    pin_temperature = _number(inputs.get("temperature"), float)
    temperature = pin_temperature if pin_temperature is not None else temperature
    seed = _number(cfg.get("seed", -1), int)
    if "seed" in inputs:
        seed = _number(inputs.get("seed"), int)
    params: Dict[str, Any] = {"temperature": temperature}
    if seed is not None and seed >= 0:
        params["seed"] = seed
    max_out = _positive_int(_pick(inputs, ("max_out_tokens", "max_output_tokens", "maxOutputTokens"), cfg,
                                  ("max_output_tokens", "maxOutputTokens")))
    if max_out is not None:
        params["max_output_tokens"] = max_out
    pending: Dict[str, Any] = {"type": "llm_call", "prompt": prompt, "system_prompt": inputs.get("system", ""),
                               "tools": tools, "params": params, "include_context": coerce_bool(include)}
    expanded = expand_memory_pin(inputs)
    pending.update({k: expanded[k] for k in MEMORY_KEYS if expanded.get(k) is not None})
    if not provider.strip() or not model.strip():
        return pending
    pending.update(provider=provider, model=model)
    max_in = _positive_int(_pick(inputs, ("max_in_tokens", "max_input_tokens", "maxInputTokens"), cfg,
                                 ("max_input_tokens", "maxInputTokens")))
    if max_in is not None:
        pending["max_input_tokens"] = max_in
    schema = response_schema(inputs["resp_schema"] if "resp_schema" in inputs else inputs.get("response_schema"))
    if schema is not None:
        pending["response_schema"] = schema
        pending["response_schema_name"] = "LLM_StructuredOutput"
        if coerce_bool(cfg.get("structured_output_fallback")):
            pending["structured_output_fallback"] = True
    context = inputs.get("context")
    if isinstance(context, dict):
        messages = [dict(m) for m in context.get("messages") or [] if isinstance(m, dict)] \
            if isinstance(context.get("messages"), list) else []
        if messages:
            lead = _leading_system(messages)
            system = pending["system_prompt"]
            extra = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
            msgs = messages[:lead] + extra + messages[lead:] + [{"role": "user", "content": prompt}]
            pending["messages"] = trim_messages(msgs, max_in, model)
            pending.pop("prompt", None)
            pending.pop("system_prompt", None)
        if isinstance(context.get("attachments"), list):
            pending["media"] = clean_attachments(context["attachments"])
    return pending


# --- trimming ------------------------------------------------------------------------------------------------------
def _estimate(message: Dict[str, Any], model: Any) -> int:
    role = str(message.get("role") or "").strip()
    content = message.get("content")
    text = f"{role}: {'' if content is None else content}"
    try:
        from abstractcore.utils.token_utils import TokenUtils  # optional: a better estimate
        return int(TokenUtils.estimate_tokens(text, model if isinstance(model, str) else None))
    except Exception:  # AbstractCore missing or its estimator failed: the character heuristic
        return max(1, int(len(text) / 4))


def trim_messages(messages: List[Dict[str, Any]], max_input_tokens: Any, model: Any = None) -> List[Dict[str, Any]]:
    """System messages first, the last non-system message always, then older ones newest-first while they fit."""
    if not isinstance(max_input_tokens, int) or isinstance(max_input_tokens, bool) or max_input_tokens <= 0:
        return messages
    system = [m for m in messages if m.get("role") == "system"]
    others = [m for m in messages if m.get("role") != "system"]
    if not others:
        return system
    used = sum(_estimate(m, model) for m in system + others[-1:])
    kept: List[Dict[str, Any]] = []
    for message in reversed(others[:-1]):
        cost = _estimate(message, model)
        if used + cost > max_input_tokens:
            break
        used += cost
        kept.append(message)
    return system + kept[::-1] + others[-1:]


# --- injection (VAM §2.5) ------------------------------------------------------------------------------------------
def _active_view(vars: Dict[str, Any]) -> List[Dict[str, Any]]:
    context = vars.get("context")
    messages = context.get("messages") if isinstance(context, dict) else None
    if not isinstance(messages, list):
        return []
    limits = vars.get("_limits") if isinstance(vars.get("_limits"), dict) else {}
    try:
        n = int(limits.get("max_history_messages", -1))
    except (TypeError, ValueError):
        n = -1
    dicts = [dict(m) for m in messages if isinstance(m, dict)]
    system = [m for m in dicts if m.get("role") == "system"]
    others = [m for m in dicts if m.get("role") != "system"]
    return system + (others if n < 0 else others[len(others) - n:] if n else [])


def inject_into_call(payload: Dict[str, Any], vars: Dict[str, Any], node_id: str, sources: Any) -> Dict[str, Any]:
    """The final ``LLM_CALL`` payload: session-attachments flag, KG Active Memory, recalled spans, run context."""
    if sources.use_session_attachments is not None:
        payload["params"]["include_session_attachments_index"] = sources.use_session_attachments
    kg_text = kg_active_memory_text(vars, node_id, sources)
    if kg_text:
        memory_bucket(vars, node_id)["_meta"]["kg_active_memory_text_len"] = len(kg_text)
        if isinstance(payload.get("messages"), list):
            msgs = payload["messages"]
            if not any(m.get("role") == "system" and KG_HEADER in str(m.get("content") or "") for m in msgs):
                msgs.insert(_leading_system(msgs), {"role": "system", "content": kg_text})
        else:
            system = payload.get("system_prompt")
            system = system.strip() if isinstance(system, str) else ""
            payload["system_prompt"] = f"{system}\n\n{kg_text}" if system else kg_text
    model = payload.get("model")
    include = payload.get("include_context") is True
    if sources.use_span_memory is True and not include and "messages" not in payload:
        recalled = recalled_span_messages(vars, node_id)
        if recalled:
            system = payload.get("system_prompt")
            lead = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
            msgs = lead + recalled + [{"role": "user", "content": payload.get("prompt", "")}]
            payload["messages"] = trim_messages(msgs, payload.get("max_input_tokens"), model)
            for key in ("prompt", "system_prompt", "system"):
                payload.pop(key, None)
    if include and "messages" not in payload:
        view = _active_view(vars)
        system = payload.get("system_prompt")
        if isinstance(system, str) and system.strip():
            view.insert(_leading_system(view), {"role": "system", "content": system})
        view.append({"role": "user", "content": payload.get("prompt", "")})
        if "max_input_tokens" in payload:
            budget = payload["max_input_tokens"]
        else:
            limits = vars.get("_limits") if isinstance(vars.get("_limits"), dict) else {}
            budget = _positive_int(limits.get("max_input_tokens"))
        payload["messages"] = trim_messages(view, budget, model)
        for key in ("prompt", "system_prompt", "system"):
            payload.pop(key, None)
    if include and "media" not in payload:
        context = vars.get("context")
        media = clean_attachments(context.get("attachments")) if isinstance(context, dict) else []
        if media:
            payload["media"] = media
    return payload


# --- the node ------------------------------------------------------------------------------------------------------
def _derived_query(sources: Any, pending: Dict[str, Any]) -> str:
    if sources.memory_query is not None:
        return sources.memory_query
    if isinstance(pending.get("prompt"), str) and pending["prompt"].strip():
        return pending["prompt"]
    for m in reversed(pending.get("messages") or []):
        if m.get("role") == "user":
            return "" if m.get("content") is None else str(m.get("content"))
    return ""


def _pre_output(pending: Dict[str, Any]) -> Dict[str, Any]:
    return {} if pending.get("provider") else {"error": MISSING_CONFIG}


def llm_call_step(ctx: Any) -> StepPlan:
    inputs = ctx.resolve()
    pending = llm_pending(inputs, ctx)
    sources = memory_sources(inputs)
    nxt = ctx.next_node("exec-out") or ctx.control_top()
    pre = _pre_output(pending)
    ctx.store_output(pre, last=False)
    try:  # recall is best-effort: a fault here sends the call without memory (a failed effect still fails the run)
        query = _derived_query(sources, pending)
        fingerprint = recall_fingerprint(sources, query=query, prompt=pending.get("prompt"),
                                         system_prompt=pending.get("system_prompt"),
                                         provider=pending.get("provider"), model=pending.get("model"))
        use_fingerprint(ctx.vars, ctx.node_id, fingerprint)
        plan = schedule_memory_recall(ctx.vars, ctx.node_id, sources, query=query, model=pending.get("model"))
    except Exception as exc:
        log.warning("visualflow_llm_memory_skipped", node_id=ctx.node_id, error=str(exc))
        plan = None
    if plan is not None:
        return plan
    payload = inject_into_call(pending, ctx.vars, ctx.node_id, sources)
    payload["resume_to_node"] = nxt
    return effect_plan(ctx, "llm_call", payload, nxt)


def _llm_evaluate(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    """Outside a run (``Flow`` dry handlers): the pre-call outputs and the pending effect of the first pass."""
    pending = llm_pending(inputs, ctx)
    pending["resume_to_node"] = ctx.next_node("exec-out")
    return {**_pre_output(pending), "_pending_effect": pending}


def llm_map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    r = result if isinstance(result, dict) else {"content": result}
    data = r.get("data")
    if data is not None:
        response = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    else:
        content = r.get("content")
        response = "" if content is None else str(content)
    tool_calls = r.get("tool_calls") if isinstance(r.get("tool_calls"), list) else []
    metadata = r.get("metadata") if isinstance(r.get("metadata"), dict) else {}
    meta = {
        "schema": "abstractflow.llm_call.v1.meta", "version": 1,
        "output_mode": "structured" if data is not None else ("tool_calls" if tool_calls else "text"),
        "tool_calls": len(tool_calls), "provider": r.get("provider"), "model": r.get("model"),
        "finish_reason": r.get("finish_reason"), "usage": r.get("usage"),
        "trace": {"trace_id": r.get("trace_id") or metadata.get("trace_id")},
        "gen_time": r.get("gen_time"), "ttft_ms": r.get("ttft_ms"),
    }
    out = dict(pre)
    out.update({"response": response, "tool_calls": tool_calls, "success": not r.get("error"), "meta": meta,
                "result": r, "raw": r, "gen_time": r.get("gen_time"), "ttft_ms": r.get("ttft_ms")})
    return out


def llm_node_type() -> VisualNodeType:
    x = "execution"
    return VisualNodeType(
        "llm_call", step=llm_call_step, evaluate=_llm_evaluate, map_result=llm_map, main_output="response",
        base_input=LAST_OUTPUT_BASE, error_mode="raise",
        inputs=[("exec-in", x), "prompt", "system", "tools", "response_schema", "context", "provider", "model",
                "include_context", "max_input_tokens", "max_output_tokens", "temperature", "seed", "memory",
                "use_span_memory", "use_kg_memory", "use_session_attachments", "memory_query", "memory_scope",
                "recall_level", "max_span_messages", "kg_max_input_tokens", "kg_limit", "kg_min_score"],
        outputs=[("exec-out", x), "response", "tool_calls", "success", "meta"],
        description="LLM call (pre-call span / KG recall when memory pins ask for it)")


__all__ = ["llm_node_type", "llm_pending", "inject_into_call", "resolve_tools", "known_tool_specs", "trim_messages",
           "clean_attachments", "llm_map"]
