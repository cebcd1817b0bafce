"""Long-tail families (LLM, tools, agent, memory, files). LLM, tools, agent and memory nodes only build effects
(``llm_call``, ``tool_calls``, ``start_subworkflow``, ``memory_*``) with the reference's pin names; the handlers of
those effects come from other plugins (AbstractCore integration, active_memory); without them the run fails with
"No effect handler registered". ``read_file`` / ``write_file`` do their file I/O in the node, under the run's
workspace policy (:mod:`abstractruntime_workspace`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from abstractruntime_storekit import write_atomic
from abstractruntime_workspace import workspace_for_vars

from ..agent_ids import visual_react_workflow_id
from ..errors import NodeDependencyError
from ..nodetypes import PURE_BASE, EffectMapping, VisualNodeType
from .common import blank as _blank, first as _first


# --- LLM -----------------------------------------------------------------------------------------------------------
def _schema(inputs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    schema = _first(inputs.get("resp_schema"), inputs.get("response_schema"))
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError:
            schema = None
    if not isinstance(schema, dict) or not schema:
        return None
    if schema.get("type") == "json_schema" and isinstance(schema.get("json_schema"), dict):
        inner = schema["json_schema"].get("schema")
        schema = inner if isinstance(inner, dict) else schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("abstractsemantics:"):
        try:
            import abstractsemantics  # type: ignore  # noqa: F401
        except ImportError:
            raise NodeDependencyError(f"llm_call: schema {ref!r} needs the abstractsemantics package") from None
        resolver = getattr(abstractsemantics, "resolve_schema", None)
        if resolver is None:
            raise NodeDependencyError(f"llm_call: cannot resolve schema {ref!r}")
        schema = resolver(ref)
    return schema


def _llm_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    cfg = ctx.config
    provider = _first(inputs.get("provider"), cfg.get("provider"))
    model = _first(inputs.get("model"), cfg.get("model"))
    prompt = inputs.get("prompt")
    prompt = "" if prompt is None else (prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False))
    system = inputs.get("system")
    temperature = _first(inputs.get("temperature"), cfg.get("temperature"))
    temperature = 0.7 if temperature is None else float(temperature)
    seed = _first(inputs.get("seed"), cfg.get("seed"))
    seed = -1 if seed is None else int(seed)
    params: Dict[str, Any] = {"temperature": temperature}
    if seed >= 0:
        params["seed"] = seed
    max_out = _first(inputs.get("max_output_tokens"), cfg.get("max_output_tokens"))
    if max_out is not None:
        params["max_output_tokens"] = int(max_out)
    tools = inputs.get("tools")
    include = _first(inputs.get("include_context"), inputs.get("use_context"), cfg.get("include_context"))
    payload: Dict[str, Any] = {
        "prompt": prompt, "system_prompt": system, "tools": list(tools) if isinstance(tools, list) else [],
        "params": params, "include_context": bool(include),
    }
    if provider is not None and model is not None:
        payload["provider"] = provider
        payload["model"] = model
        schema = _schema(inputs)
        if schema is not None:
            payload["response_schema"] = schema
            payload["response_schema_name"] = "LLM_StructuredOutput"
    max_in = _first(inputs.get("max_input_tokens"), cfg.get("max_input_tokens"))
    if max_in is not None:
        payload["max_input_tokens"] = int(max_in)
    context = inputs.get("context")
    messages = context.get("messages") if isinstance(context, dict) else None
    if isinstance(messages, list) and messages:
        lead = 0
        while lead < len(messages) and isinstance(messages[lead], dict) and messages[lead].get("role") == "system":
            lead += 1
        msgs = copy.deepcopy(messages[:lead])
        if not _blank(system):
            msgs.append({"role": "system", "content": system})
        msgs += copy.deepcopy(messages[lead:])
        msgs.append({"role": "user", "content": prompt})
        payload["messages"] = msgs
        payload.pop("prompt", None)
        payload.pop("system_prompt", None)
        attachments = context.get("attachments")
        if attachments:
            payload["media"] = copy.deepcopy(attachments)
    return payload


def _llm_pre(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    cfg = ctx.config
    if _first(inputs.get("provider"), cfg.get("provider")) is None or \
            _first(inputs.get("model"), cfg.get("model")) is None:
        return {"error": "Missing provider or model configuration"}
    return {}


def _llm_map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    r = result if isinstance(result, dict) else {"content": result}
    data = r.get("data")
    if data is not None:
        response = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    else:
        content = r.get("content")
        response = "" if content is None else str(content)
    tool_calls = r.get("tool_calls") if isinstance(r.get("tool_calls"), list) else []
    meta = {
        "schema": "abstractflow.llm_call.v1.meta", "version": 1,
        "output_mode": "structured" if data is not None else ("tool_calls" if tool_calls else "text"),
        "tool_calls": len(tool_calls), "provider": r.get("provider"), "model": r.get("model"),
        "finish_reason": r.get("finish_reason"), "usage": r.get("usage"),
        "trace": {"trace_id": r.get("trace_id") or (r.get("metadata") or {}).get("trace_id")
                  if isinstance(r.get("metadata"), dict) or r.get("trace_id") else None},
        "gen_time": r.get("gen_time"), "ttft_ms": r.get("ttft_ms"),
    }
    out = dict(pre)
    out.update({"response": response, "tool_calls": tool_calls, "success": not r.get("error"), "meta": meta,
                "result": r, "raw": r, "gen_time": r.get("gen_time"), "ttft_ms": r.get("ttft_ms")})
    return out


# --- tools ---------------------------------------------------------------------------------------------------------
def _tool_calls_list(value: Any) -> List[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            value = []
    if isinstance(value, dict):
        if isinstance(value.get("tool_calls"), list):
            return list(value["tool_calls"])
        return [value]
    return list(value) if isinstance(value, list) else []


def _allowed(inputs: Dict[str, Any], cfg: Dict[str, Any]) -> Any:
    if inputs.get("allowed_tools") is not None:
        return inputs["allowed_tools"]
    for key in ("allowed_tools", "allowedTools"):
        if cfg.get(key) is not None:
            return cfg[key]
    return None


def _tool_calls_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    payload: Dict[str, Any] = {"tool_calls": _tool_calls_list(inputs.get("tool_calls"))}
    allowed = _allowed(inputs, ctx.config)
    if allowed is not None:
        payload["allowed_tools"] = list(allowed) if isinstance(allowed, list) else [allowed]
    return payload


def _tool_calls_map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    r = result if isinstance(result, dict) else {}
    results = r.get("results") if isinstance(r.get("results"), list) else []
    success = r.get("mode", "executed") == "executed" and all(
        isinstance(x, dict) and x.get("success") for x in results)
    return {"results": results, "success": success, "raw": result}


def _call_tool_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    call = _first(inputs.get("tool_call"), inputs.get("toolCall"))
    calls = _tool_calls_list(call)
    payload: Dict[str, Any] = {"tool_calls": calls[:1]}
    allowed = _allowed(inputs, ctx.config)
    if allowed is not None:
        payload["allowed_tools"] = list(allowed) if isinstance(allowed, list) else [allowed]
    return payload


def _call_tool_map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    r = result if isinstance(result, dict) else {}
    results = r.get("results") if isinstance(r.get("results"), list) else []
    first = results[0] if results and isinstance(results[0], dict) else {}
    ok = bool(first.get("success")) and r.get("mode", "executed") == "executed"
    return {"result": first.get("output") if ok else first.get("error"), "success": ok, "raw": result}


def _tool_parameters(d: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    cfg = ctx.data.get("toolParametersConfig") if ctx is not None else None
    tool = cfg.get("tool") if isinstance(cfg, dict) else None
    pins = ctx.declared_inputs if ctx is not None else [k for k in d if not k.startswith("_")]
    out = {p: d.get(p) for p in pins}
    out["tool_call"] = {"name": tool, "arguments": {p: v for p, v in out.items() if v is not None}}
    return out


# --- agent ---------------------------------------------------------------------------------------------------------
def _agent_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    cfg = ctx.data.get("agentConfig") if isinstance(ctx.data.get("agentConfig"), dict) else {}
    workflow_id = cfg.get("_react_workflow_id") or visual_react_workflow_id(flow_id=ctx.flow.id, node_id=ctx.node_id)
    task = inputs.get("task", inputs.get("prompt"))
    child = {"context": {"task": "" if task is None else str(task),
                         "messages": list((inputs.get("context") or {}).get("messages") or [])
                         if isinstance(inputs.get("context"), dict) else []}}
    for key in ("system", "tools", "provider", "model", "max_iterations", "response_schema"):
        value = _first(inputs.get(key), cfg.get(key))
        if value is not None:
            child.setdefault("_runtime", {})[key] = value
    return {"workflow_id": workflow_id, "vars": child, "async": True, "wait": True}


def _agent_map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    r = result if isinstance(result, dict) else {}
    out = r.get("output") if isinstance(r.get("output"), dict) else {"answer": r.get("output")}
    answer = out.get("answer", out.get("response", out.get("result")))
    return {"response": "" if answer is None else (answer if isinstance(answer, str) else json.dumps(answer)),
            "success": out.get("success", True) is not False and r.get("status") not in ("failed", "cancelled"),
            "meta": {"schema": "abstractcode.agent.v1.meta", "version": 1, "sub_run_id": r.get("sub_run_id")},
            "scratchpad": out.get("scratchpad"), "tool_calls": out.get("tool_calls", []),
            "tool_results": out.get("tool_results", []), "result": out}


# --- memory --------------------------------------------------------------------------------------------------------
_MEMORY_PINS = {
    "memory_note": ("note", ["content", "tags", "sources", "location", "scope", "keep_in_context"]),
    "memory_query": (None, ["query", "limit", "recall_level", "tags", "tags_mode", "usernames", "locations",
                            "since", "until", "scope"]),
    "memory_tag": (None, ["span_id", "tags", "merge", "scope"]),
    "memory_compact": (None, ["preserve_recent", "compression_mode", "focus"]),
    "memory_rehydrate": (None, ["span_ids", "span_id", "placement", "max_messages", "recall_level"]),
    "memory_kg_assert": (None, ["assertions", "triples", "items", "scope"]),
    "memory_kg_query": (None, ["query", "subject", "predicate", "object", "limit", "scope"]),
    "memory_kg_resolve": (None, ["label", "expected_type", "limit", "scope"]),
}


def _memory_payload_for(effect_type: str):
    rename, pins = _MEMORY_PINS[effect_type]

    def build(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
        payload = {p: inputs[p] for p in pins if inputs.get(p) is not None}
        if rename and "content" in payload:
            payload[rename] = payload.pop("content")
        if effect_type == "memory_query":
            payload.setdefault("limit_spans", payload.pop("limit", 10))
            if "usernames" in payload:
                payload["authors"] = payload.pop("usernames")
        if effect_type == "memory_kg_assert" and "assertions" not in payload:
            payload["assertions"] = payload.pop("triples", payload.pop("items", []))
        return payload

    return build


def _memory_map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"raw": result}
    if isinstance(result, dict):
        results = result.get("results")
        if isinstance(results, list):  # tool envelope
            first = results[0] if results and isinstance(results[0], dict) else {}
            output = first.get("output")
            out["results"] = results
            out["success"] = bool(first.get("success", True))
            out["rendered"] = output if isinstance(output, str) else (output or {}).get("rendered") \
                if isinstance(output, dict) else None
            if isinstance(output, dict):
                for key, value in output.items():
                    out.setdefault(key, value)
        for key, value in result.items():
            if key not in ("results", "mode"):
                out.setdefault(key, value)
        if "count" in out or "items" in out:
            out.setdefault("ok", True)
    return out


# --- files ---------------------------------------------------------------------------------------------------------
def _file_path(inputs: Dict[str, Any], ctx: Any) -> Path:
    """The node's ``file_path`` under the run's workspace policy, the one the host sealed when the run started
    (relative to its root if it has one, else to the working directory; see :mod:`abstractruntime_workspace`)."""
    return workspace_for_vars(ctx.vars).resolve(inputs.get("file_path"))


def _read_file(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    path = _file_path(inputs, ctx)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return {"content": json.loads(text)}
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):  # JSON-looking text: parsed best-effort
        try:
            return {"content": json.loads(stripped)}
        except ValueError:
            pass
    return {"content": text}


def _write_file(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    path = _file_path(inputs, ctx)
    content = inputs.get("content")
    if path.suffix.lower() == ".json":
        if isinstance(content, str):
            try:
                content = json.loads(content)
            except ValueError:
                pass
        text = content if isinstance(content, str) else json.dumps(content, indent=2, ensure_ascii=False) + "\n"
    else:
        text = content if isinstance(content, str) else "" if content is None else json.dumps(content,
                                                                                               ensure_ascii=False)
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)  # a reader never sees half a file, and the file survives a crash once written
    return {"bytes": len(data), "file_path": str(path)}


def longtail_node_types() -> List[VisualNodeType]:
    T, E, X = VisualNodeType, EffectMapping, "execution"
    types = [
        T("llm_call", effect=E("llm_call", _llm_payload, pre_output=_llm_pre, map_result=_llm_map,
                               main_output="response"),
          inputs=[("exec-in", X), "prompt", "system", "tools", "response_schema", "context", "provider", "model"],
          outputs=[("exec-out", X), "response", "tool_calls", "success", "meta"]),
        T("tool_calls", effect=E("tool_calls", _tool_calls_payload, map_result=_tool_calls_map,
                                 main_output="results"),
          inputs=[("exec-in", X), "tool_calls", "allowed_tools"], outputs=[("exec-out", X), "results", "success"]),
        T("call_tool", effect=E("tool_calls", _call_tool_payload, map_result=_call_tool_map, main_output="result"),
          inputs=[("exec-in", X), "tool_call"], outputs=[("exec-out", X), "result", "success"]),
        T("read_file", handler=_read_file, context=True, inputs=[("exec-in", X), "file_path"],
          outputs=[("exec-out", X), "content"], description="Read a file (workspace policy of the run applies)"),
        T("write_file", handler=_write_file, context=True, inputs=[("exec-in", X), "file_path", "content"],
          outputs=[("exec-out", X), "bytes", "file_path"],
          description="Write a file atomically, creating parent directories (workspace policy applies)"),
        T("tool_parameters", handler=_tool_parameters, context=True, pure=True, base_input=PURE_BASE,
          outputs=["tool_call"]),
        T("agent", effect=E("start_subworkflow", _agent_payload, map_result=_agent_map, main_output="response"),
          inputs=[("exec-in", X), "task", "context"], outputs=[("exec-out", X), "response", "success", "meta"],
          description="ReAct agent subworkflow (the host registers visual_react_workflow_id(...))"),
    ]
    for effect_type in _MEMORY_PINS:
        types.append(T(effect_type, effect=E(effect_type, _memory_payload_for(effect_type), map_result=_memory_map,
                                             main_output="raw"),
                       inputs=[("exec-in", X)] + list(_MEMORY_PINS[effect_type][1]),
                       outputs=[("exec-out", X), "raw"]))
    return types


__all__ = ["longtail_node_types"]
