"""The ``agent`` node (VAM §1): a phase machine that runs a ReAct subworkflow and maps its result onto pins.

State lives in ``vars._temp.agent.<node_id>`` (the *bucket*): ``phase`` ``init`` -> ``subworkflow`` ->
(``structured``) -> ``done``. Each intermediate step emits one effect whose plan continues at the agent node
itself, so the node re-enters after each effect (pre-agent recall, ``START_SUBWORKFLOW`` async+wait, the optional
structured ``LLM_CALL``). Inputs are resolved in ``init`` and frozen once the subworkflow starts.

Deliberate differences from the reference (documented in ``docs/visualflow.md``): an unresolvable schema ``$ref``
fails the run instead of running the agent with empty inputs; a ``subworkflow`` (or ``structured``) phase
re-entered without its result ends the invocation with ``success: false`` instead of spinning; a child reported
``failed``/``cancelled`` by the host gives ``success: false``.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, List, Optional

from abstractruntime.models import Effect, StepPlan

from .agent_inputs import agent_settings, coerce_bool, resolve_agent_inputs
from .agent_recall import pre_agent_recall, recalled_messages
from .agent_turn import persist_turn, read_child_result, tool_activity, trace_steps
from .context import NodeContext, get_path
from .memory_sources import clear_memory_sources

META_SCHEMA = "abstractcode.agent.v1.meta"
DEFAULT_LIMITS = {"max_iterations": 25, "current_iteration": 0, "max_tokens": 32768, "max_output_tokens": None,
                  "max_input_tokens": None, "max_history_messages": -1, "estimated_tokens_used": 0,
                  "warn_iterations_pct": 80, "warn_tokens_pct": 80}
STRUCTURED_INSTRUCTION = ("Turn the agent's answer below into a JSON object that matches the required schema. "
                          "Reply with the JSON object only.")


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _is_system(m: Any) -> bool:
    return isinstance(m, dict) and m.get("role") == "system"


# --- child vars (VAM §1.5) ---------------------------------------------------------------------------------------
def active_view(vars: Dict[str, Any]) -> List[Dict[str, Any]]:
    """System messages first, then the last ``_limits.max_history_messages`` other messages (negative: all)."""
    context = vars.get("context") if isinstance(vars.get("context"), dict) else {}
    messages = context.get("messages")
    if not isinstance(messages, list):
        return []
    limits = vars.get("_limits") if isinstance(vars.get("_limits"), dict) else {}
    try:
        keep = int(limits.get("max_history_messages", -1))
    except (TypeError, ValueError):
        keep = -1
    dicts = [m for m in messages if isinstance(m, dict)]
    others = [m for m in dicts if not _is_system(m)]
    others = others if keep < 0 else (others[-keep:] if keep > 0 else [])
    return [dict(m) for m in dicts if _is_system(m)] + [dict(m) for m in others]


def merge_recalled(base: List[Dict[str, Any]], extra: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    ordered = [m for m in base if _is_system(m)] + [m for m in extra if _is_system(m)] + \
        [m for m in base if not _is_system(m)] + [m for m in extra if not _is_system(m)]
    seen, out = set(), []
    for m in ordered:
        meta = m.get("metadata") if isinstance(m.get("metadata"), dict) else {}
        mid = meta.get("message_id")
        if isinstance(mid, str) and mid.strip():
            if mid in seen:
                continue
            seen.add(mid)
        out.append(m)
    return out


def _clean_attachments(value: Any) -> List[Any]:
    out: List[Any] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            out.append(copy.deepcopy(item))
        elif isinstance(item, str) and item.strip():
            out.append(item.strip())
    return out


def _text(value: Any) -> Optional[str]:
    return value.strip() if isinstance(value, str) and value.strip() else None


def build_child_vars(vars: Dict[str, Any], inputs: Dict[str, Any], s: Dict[str, Any],
                     extra_messages: List[Dict[str, Any]]) -> Dict[str, Any]:
    pin = inputs.get("context") if isinstance(inputs.get("context"), dict) else {}
    messages = active_view(vars) if s["include_context"] else []
    pin_messages = [copy.deepcopy(m) for m in pin.get("messages") or [] if isinstance(m, dict)] \
        if isinstance(pin.get("messages"), list) else []
    if pin_messages:
        messages = pin_messages
    if extra_messages:
        messages = merge_recalled(messages, [copy.deepcopy(m) for m in extra_messages if isinstance(m, dict)])
    context: Dict[str, Any] = {"task": str(inputs.get("task") or ""), "messages": messages}
    parent_ctx = vars.get("context") if isinstance(vars.get("context"), dict) else {}
    if s["include_context"]:
        attachments = _clean_attachments(parent_ctx.get("attachments"))
        if attachments:
            context["attachments"] = attachments
    for key, value in pin.items():
        if key not in ("task", "messages"):
            context[key] = copy.deepcopy(value)
    limits = copy.deepcopy(vars["_limits"]) if isinstance(vars.get("_limits"), dict) else {}
    for key, value in DEFAULT_LIMITS.items():
        limits.setdefault(key, value)
    limits.update(current_iteration=0, estimated_tokens_used=0)  # the child's own counters (ours count per run)
    for key in ("max_iterations", "max_input_tokens", "max_output_tokens"):
        if s.get(key):
            limits[key] = s[key]
    parent_rt = vars.get("_runtime") if isinstance(vars.get("_runtime"), dict) else {}
    runtime: Dict[str, Any] = {"inbox": [], "provider": s["provider"], "model": s["model"],
                               "allowed_tools": list(inputs.get("tools") or [])}
    if _text(parent_rt.get("audio_policy")):
        runtime["audio_policy"] = _text(parent_rt.get("audio_policy"))
    language = parent_rt.get("stt_language")
    language = language if language is not None else parent_rt.get("audio_language")
    if _text(language):
        runtime["stt_language"] = _text(language)
    if abs(s["temperature"] - 0.7) > 1e-9:
        runtime["temperature"] = s["temperature"]
    if s["seed"] >= 0:
        runtime["seed"] = s["seed"]
    if "use_session_attachments" in inputs:
        runtime["control"] = {"include_session_attachments_index": coerce_bool(inputs["use_session_attachments"])}
    if _text(inputs.get("system")):
        runtime["system_prompt_extra"] = inputs["system"]
    return {"context": context, "scratchpad": {"iteration": 0, "max_iterations": limits.get("max_iterations") or 25},
            "_runtime": runtime, "_temp": {}, "_limits": limits}


# --- outputs (VAM §1.9) ------------------------------------------------------------------------------------------
def _meta(provider: Any, model: Any, tool_calls: int, tool_results: int, **extra: Any) -> Dict[str, Any]:
    meta = {"schema": META_SCHEMA, "version": 1, "provider": provider, "model": model,
            "tool_calls": tool_calls, "tool_results": tool_results}
    meta.update({k: v for k, v in extra.items() if v is not None})
    return meta


def _finish(ctx: NodeContext, bucket: Dict[str, Any], raw: Any, output: Dict[str, Any]) -> StepPlan:
    bucket["phase"] = "done"
    ctx.temp.setdefault("effects", {})
    if not isinstance(ctx.temp["effects"], dict):
        ctx.temp["effects"] = {}
    ctx.temp["effects"][ctx.node_id] = raw
    ctx.store_output(output)
    done = {k: output.get(k) for k in ("response", "success", "meta", "scratchpad")}
    return ctx.continue_after(output, completion=done)


def _fail_invocation(ctx: NodeContext, bucket: Dict[str, Any], s: Dict[str, Any], *, response: str, error: str,
                     flow_error: str) -> StepPlan:
    """End this invocation with ``success: false`` (no effect); the run continues to the next node."""
    inputs = bucket.get("resolved_inputs") or {}
    provider, model = s.get("provider") or "unknown", s.get("model") or "unknown"
    ctx.vars["_flow_error"] = flow_error
    ctx.vars["_flow_error_node"] = ctx.node_id
    raw = {"response": response, "task": inputs.get("task", ""), "context": inputs.get("context", {}),
           "success": False, "error": error, "provider": provider, "model": model}
    bucket["success"] = False
    output = {"response": response, "success": False, "meta": _meta(provider, model, 0, 0),
              "scratchpad": {"node_id": ctx.node_id, "steps": [], "tool_calls": [], "tool_results": []},
              "tool_calls": [], "tool_results": []}
    return _finish(ctx, bucket, raw, output)


def _output(bucket: Dict[str, Any], response: str, *, structured: bool) -> Dict[str, Any]:
    pad = bucket.get("scratchpad") or {}
    calls, results = list(bucket.get("tool_calls") or []), list(bucket.get("tool_results") or [])
    meta = _meta(bucket.get("provider"), bucket.get("model"), len(calls), len(results),
                 output_mode="structured" if structured else "unstructured",
                 sub_run_id=pad.get("sub_run_id") if structured else bucket.get("sub_run_id"),
                 iterations=None if structured else bucket.get("iterations"))
    scratchpad = {**pad, "tool_calls": calls, "tool_results": results}
    return {"response": response, "success": bool(bucket.get("success", True)), "meta": meta,
            "scratchpad": scratchpad, "tool_calls": calls, "tool_results": results}


# --- the phase machine (VAM §1.4) --------------------------------------------------------------------------------
def _bucket(ctx: NodeContext) -> Dict[str, Any]:
    agents = ctx._ns("agent")
    bucket = agents.get(ctx.node_id)
    if not isinstance(bucket, dict):
        bucket = agents[ctx.node_id] = {}
    return bucket


def _config(ctx: NodeContext) -> Dict[str, Any]:
    cfg = ctx.data.get("agentConfig")
    return cfg if isinstance(cfg, dict) else {}


def _settings(ctx: NodeContext, inputs: Dict[str, Any]) -> Dict[str, Any]:
    return agent_settings(inputs, _config(ctx), flow_id=ctx.flow.id, node_id=ctx.node_id)


def agent_step(ctx: NodeContext) -> StepPlan:
    nid = ctx.node_id
    bucket = _bucket(ctx)
    if bucket.get("phase") == "done":  # reached again (a loop): a new invocation
        bucket.clear()
        clear_memory_sources(ctx.vars, nid)
    phase = bucket.get("phase") or "init"
    if phase == "init":
        return _init(ctx, bucket)
    inputs = bucket.get("resolved_inputs") if isinstance(bucket.get("resolved_inputs"), dict) else {}
    s = _settings(ctx, inputs)
    if phase == "subworkflow":
        return _completed(ctx, bucket, inputs, s)
    if phase == "structured":
        return _structured_done(ctx, bucket)
    return _fail_invocation(ctx, bucket, s, response=f"Agent state error: unknown phase {phase!r}",
                            error=f"unknown phase {phase!r}", flow_error=f"Agent node in unknown phase {phase!r}")


def _init(ctx: NodeContext, bucket: Dict[str, Any]) -> StepPlan:
    nid = ctx.node_id
    bucket["phase"] = "init"
    inputs = resolve_agent_inputs(ctx.resolve(), _config(ctx))  # a bad schema $ref raises: the run fails
    bucket["resolved_inputs"] = inputs
    s = _settings(ctx, inputs)
    if not s["provider"] or not s["model"]:
        return _fail_invocation(ctx, bucket, s, response="Agent configuration error: missing provider/model",
                                error="missing provider/model",
                                flow_error="Agent node missing provider/model configuration")
    recall = pre_agent_recall(ctx, inputs, s)  # memory recall before the agent (VAM §2.4): re-enters the node
    if recall is not None:
        return recall
    bucket["phase"] = "subworkflow"
    bucket.pop("sub", None)
    child = build_child_vars(ctx.vars, inputs, s, recalled_messages(ctx, inputs))
    payload = {"workflow_id": s["workflow_id"], "vars": child, "async": True, "wait": True, "include_traces": True}
    return StepPlan(node_id=nid, effect=Effect(type="start_subworkflow", payload=payload,
                                               result_key=f"_temp.agent.{nid}.sub"), next_node=nid)


def _completed(ctx: NodeContext, bucket: Dict[str, Any], inputs: Dict[str, Any], s: Dict[str, Any]) -> StepPlan:
    nid = ctx.node_id
    sub = get_path(ctx.vars, f"_temp.agent.{nid}.sub")
    if not isinstance(sub, dict):  # the reference spins here (VAM §1.4 #7); we end the invocation instead
        return _fail_invocation(
            ctx, bucket, s, response="Agent error: the subworkflow result is missing",
            error="missing subworkflow result",
            flow_error=f"Agent node re-entered without its subworkflow result at _temp.agent.{nid}.sub (the host "
                       f"must resume the wait with the child's {{sub_run_id, output}})")
    task = str(inputs.get("task") or "")
    facts = read_child_result(sub, task)
    context_extra = {k: copy.deepcopy(v) for k, v in (inputs.get("context") or {}).items()
                     if k not in ("task", "messages")}
    scratchpad = {"sub_run_id": facts["sub_run_id"], "workflow_id": s["workflow_id"], "task": task,
                  "messages": facts["messages"], "node_traces": facts["node_traces"], "steps": facts["steps"]}
    if context_extra:
        scratchpad["context_extra"] = context_extra
    failed = sub.get("status") in ("failed", "cancelled")
    bucket.update(scratchpad=scratchpad, messages=facts["messages"], answer=facts["answer"], success=not failed,
                  provider=s["provider"], model=s["model"], output_mode="unstructured",
                  tool_calls=facts["tool_calls"], tool_results=facts["tool_results"])
    if facts["iterations"] is not None:
        bucket["iterations"] = facts["iterations"]
    if facts["sub_run_id"]:
        bucket["sub_run_id"] = facts["sub_run_id"]
    if s["include_context"]:
        persist_turn(ctx.vars, bucket, node_id=nid, run_id=ctx.run_id, task=task, answer=facts["answer"],
                     sub_run_id=facts["sub_run_id"], tool_calls=facts["tool_calls"],
                     tool_results=facts["tool_results"])
    if failed:
        error = str(sub.get("error") or f"subworkflow {sub.get('status')}")
        output = _output(bucket, facts["answer"].strip(), structured=False)
        output["error"] = error
        return _finish(ctx, bucket, {"success": False, "error": error}, output)
    if s["schema"]:
        bucket["phase"] = "structured"
        params: Dict[str, Any] = {"temperature": s["temperature"]}
        if s["seed"] >= 0:
            params["seed"] = s["seed"]
        content = f"{STRUCTURED_INSTRUCTION}\n\nTask:\n{task}\n\nAnswer:\n{facts['answer']}"
        payload = {"messages": [{"role": "user", "content": content}], "system_prompt": inputs.get("system") or "",
                   "provider": s["provider"], "model": s["model"], "response_schema": s["schema"],
                   "response_schema_name": f"Agent_{nid}", "params": params}
        return StepPlan(node_id=nid, effect=Effect(type="llm_call", payload=payload,
                                                   result_key=f"_temp.agent.{nid}.structured"), next_node=nid)
    return _finish(ctx, bucket, {"success": True}, _output(bucket, facts["answer"].strip(), structured=False))


def _structured_done(ctx: NodeContext, bucket: Dict[str, Any]) -> StepPlan:
    result = get_path(ctx.vars, f"_temp.agent.{ctx.node_id}.structured")
    result = result if isinstance(result, dict) else {}
    data = result.get("data")
    if data is None and isinstance(result.get("content"), str):
        try:
            data = json.loads(result["content"])
        except ValueError:
            data = None
    data = data if isinstance(data, dict) else {}
    bucket["output_mode"] = "structured"
    return _finish(ctx, bucket, copy.deepcopy(data), _output(bucket, _compact(data), structured=True))


# --- what downstream nodes read (the sync re-mapping, VAM §1.9) --------------------------------------------------
def _reads_result_pin(ctx: Any) -> bool:
    nid = ctx.node_id
    return any(src == (nid, "result") for node in ctx.flow.nodes.values() for src in node.data_in.values())


def _last_llm_step(scratchpad: Dict[str, Any]) -> Dict[str, Any]:
    for step in reversed(scratchpad.get("steps") or []):
        effect = step.get("effect") if isinstance(step, dict) and isinstance(step.get("effect"), dict) else {}
        if effect.get("type") == "llm_call":
            payload = effect.get("payload") if isinstance(effect.get("payload"), dict) else {}
            result = step.get("result") if isinstance(step.get("result"), dict) else {}
            return {"provider": payload.get("provider") or result.get("provider"),
                    "model": payload.get("model") or result.get("model")}
    return {}


def agent_outputs(raw: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    """The agent's output pins rebuilt from ``_temp.effects.<id>`` (*raw*) and the bucket."""
    temp = ctx.vars.get("_temp") if isinstance(ctx.vars.get("_temp"), dict) else {}
    agents = temp.get("agent") if isinstance(temp.get("agent"), dict) else {}
    bucket = agents.get(ctx.node_id) if isinstance(agents.get(ctx.node_id), dict) else {}
    raw_d = raw if isinstance(raw, dict) else {}
    traces = get_path(ctx.vars, "_runtime.node_traces")
    pad = bucket.get("scratchpad") if isinstance(bucket.get("scratchpad"), dict) else (
        traces.get(ctx.node_id) if isinstance(traces, dict) and isinstance(traces.get(ctx.node_id), dict)
        else {"node_id": ctx.node_id, "steps": []})
    pad = copy.deepcopy(pad)
    if isinstance(pad.get("node_traces"), dict):
        calls, results = tool_activity(trace_steps(pad["node_traces"]))
    elif "steps" in pad and "node_id" in pad:
        calls, results = tool_activity(trace_steps({"self": pad}))
    else:
        calls, results = [], []
    pad["tool_calls"], pad["tool_results"] = calls, results
    structured = bucket.get("output_mode") == "structured"
    if structured:
        response = _compact(raw)
    elif _text(bucket.get("answer")):
        response = bucket["answer"].strip()
    elif _text(raw_d.get("result")) or _text(raw_d.get("response")):
        response = _text(raw_d.get("result")) or _text(raw_d.get("response"))
    else:
        response = _text(raw) or ""
    if "messages" not in pad:
        raw_ctx = raw_d.get("context") if isinstance(raw_d.get("context"), dict) else {}
        if isinstance(bucket.get("messages"), list):
            pad["messages"] = copy.deepcopy(bucket["messages"])
        elif isinstance(raw_ctx.get("messages"), list):
            pad["messages"] = copy.deepcopy(raw_ctx["messages"])
        else:
            task = str(raw_d.get("task") or "")
            pad["messages"] = ([{"role": "user", "content": task}] if task.strip() else []) + \
                ([{"role": "assistant", "content": response}] if response.strip() else [])
    success = raw_d["success"] if "success" in raw_d else bucket.get("success", True)
    llm = _last_llm_step(pad)

    def pick(key: str) -> Any:
        if isinstance(raw_d.get(key), str) and raw_d[key]:
            return raw_d[key]
        return bucket.get(key) or llm.get(key)

    iterations = raw_d["iterations"] if "iterations" in raw_d else bucket.get("iterations")
    sub_run_id = raw_d["sub_run_id"] if isinstance(raw_d.get("sub_run_id"), str) else bucket.get("sub_run_id")
    meta = _meta(pick("provider"), pick("model"), len(calls), len(results), sub_run_id=sub_run_id,
                 iterations=iterations, output_mode=bucket.get("output_mode"))
    for key in ("provider", "model"):
        if meta.get(key) is None:
            meta.pop(key)
    out = {"response": response, "success": success, "meta": meta, "scratchpad": pad,
           "tool_calls": calls, "tool_results": results}
    if isinstance(pre, dict) and "error" in pre:
        out["error"] = pre["error"]
    if _reads_result_pin(ctx):
        has_more = isinstance(raw, dict) and any(k != "success" for k in raw)
        out["result"] = raw if has_more else {k: out[k] for k in ("response", "success", "meta", "scratchpad")}
    return out


__all__ = ["agent_step", "agent_outputs", "build_child_vars", "active_view", "META_SCHEMA"]
