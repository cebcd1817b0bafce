"""The default ReAct workflow behind ``agent`` nodes (VAM §1.10), built on the ``LLM_CALL`` and ``TOOL_CALLS``
effects only, so an agent flow runs with nothing else installed than an LLM_CALL / TOOL_CALLS handler (the
AbstractCore integration plugin).

The agent node starts ``visual_react_workflow_id(flow_id, node_id)`` (or ``agentConfig._react_workflow_id``); a
host registers a ReAct workflow under that id. :func:`compile_visualflow_tree` returns the default one for every
agent node of the tree (a flow of the same id wins), :func:`register_agent_workflows` registers it where the host
has registered nothing. A host with its own ReAct workflow (AbstractAgent's) registers that one instead.

Contract (VAM §1.10): the workflow reads ``context.task`` / ``context.messages``, ``_runtime.provider`` /
``model`` / ``allowed_tools`` / ``system_prompt_extra`` / ``temperature`` / ``seed``, ``_limits.max_iterations`` /
``max_input_tokens`` / ``max_output_tokens``, and completes with ``{answer, iterations, messages}``. Loop:
``llm`` (LLM_CALL with the allowed tools) -> tool calls? ``tools`` (TOOL_CALLS) -> ``observe`` -> ``llm`` again;
no tool call (or the iteration limit reached) -> completed. All state lives in ``vars._temp.react``.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable, Dict, List, Sequence, Union

from abstractruntime.models import Effect, StepPlan, WorkflowSpec

from .agent_inputs import agent_workflow_id
from .models import VisualFlow, load_visualflow_json

REACT_SYSTEM_PROMPT = ("You are an agent that completes the user's task. Call the available tools when they help; "
                       "when you have the final answer, reply with it directly, without calling a tool.")
ToolSpecs = Union[Sequence[Dict[str, Any]], Callable[[List[str]], Sequence[Dict[str, Any]]], None]


def _state(run: Any) -> Dict[str, Any]:
    temp = run.vars.setdefault("_temp", {})
    if not isinstance(temp, dict):
        temp = run.vars["_temp"] = {}
    state = temp.get("react")
    if not isinstance(state, dict):
        state = temp["react"] = {}
    return state


def _ns(run: Any, key: str) -> Dict[str, Any]:
    value = run.vars.get(key)
    return value if isinstance(value, dict) else {}


def _specs_for(names: List[str], tool_specs: ToolSpecs) -> List[Dict[str, Any]]:
    """A tool spec per allowed name: the host's spec, else a minimal one (name only, any arguments)."""
    given = tool_specs(list(names)) if callable(tool_specs) else (tool_specs or [])
    by_name = {s.get("name"): s for s in given if isinstance(s, dict)}
    out = []
    for name in names:
        spec = by_name.get(name)
        out.append(copy.deepcopy(dict(spec)) if spec else {
            "name": name, "description": f"The {name} tool.", "parameters": {"type": "object", "properties": {}}})
    return out


def _render(output: Any) -> str:
    if isinstance(output, (dict, list)):
        return json.dumps(output, ensure_ascii=False)
    return "" if output is None else str(output)


def default_react_workflow(workflow_id: str, *, tool_specs: ToolSpecs = None) -> WorkflowSpec:
    """The default ReAct ``WorkflowSpec`` under ``workflow_id``. ``tool_specs``: JSON tool specs (``name``,
    ``description``, ``parameters``) offered to the model for the agent's allowed tools, or a function of the
    allowed names returning them; an allowed tool without a spec is offered by name only."""

    def init(run: Any, ctx: Any) -> StepPlan:
        context, rt = _ns(run, "context"), _ns(run, "_runtime")
        system = REACT_SYSTEM_PROMPT
        extra = rt.get("system_prompt_extra")
        if isinstance(extra, str) and extra.strip():
            system = f"{system}\n\n{extra}"
        messages = [{"role": "system", "content": system}]
        history = context.get("messages") if isinstance(context.get("messages"), list) else []
        messages += [copy.deepcopy(m) for m in history if isinstance(m, dict)]
        task = str(context.get("task") or "")
        if task.strip():
            messages.append({"role": "user", "content": task})
        state = _state(run)
        state.update(messages=messages, iteration=0)
        return StepPlan(node_id="init", next_node="llm")

    def llm(run: Any, ctx: Any) -> StepPlan:
        state, rt, limits = _state(run), _ns(run, "_runtime"), _ns(run, "_limits")
        state["iteration"] = int(state.get("iteration") or 0) + 1
        if isinstance(run.vars.get("scratchpad"), dict):
            run.vars["scratchpad"]["iteration"] = state["iteration"]
        if isinstance(run.vars.get("_limits"), dict):
            run.vars["_limits"]["current_iteration"] = state["iteration"]
        params: Dict[str, Any] = {}
        if rt.get("temperature") is not None:
            params["temperature"] = rt["temperature"]
        if rt.get("seed") is not None:
            params["seed"] = rt["seed"]
        if limits.get("max_output_tokens"):
            params["max_output_tokens"] = limits["max_output_tokens"]
        allowed = [t for t in rt.get("allowed_tools") or [] if isinstance(t, str)]
        payload: Dict[str, Any] = {"messages": copy.deepcopy(state["messages"]), "provider": rt.get("provider"),
                                   "model": rt.get("model"), "tools": _specs_for(allowed, tool_specs),
                                   "params": params}
        if limits.get("max_input_tokens"):
            payload["max_input_tokens"] = limits["max_input_tokens"]
        return StepPlan(node_id="llm", effect=Effect(type="llm_call", payload=payload, result_key="_temp.react.llm"),
                        next_node="route")

    def route(run: Any, ctx: Any) -> StepPlan:
        state, rt, limits = _state(run), _ns(run, "_runtime"), _ns(run, "_limits")
        result = state.get("llm") if isinstance(state.get("llm"), dict) else {}
        content = result.get("content")
        content = "" if content is None else str(content)
        calls = [c for c in result.get("tool_calls") or [] if isinstance(c, dict)]
        limit = int(limits.get("max_iterations") or 25)
        if calls and rt.get("allowed_tools") and state["iteration"] < limit:
            for i, call in enumerate(calls):
                call.setdefault("call_id", call.get("id") or f"call_{state['iteration']}_{i}")
            state["calls"] = calls
            state["messages"].append({"role": "assistant", "content": content, "tool_calls": [
                {"id": c["call_id"], "type": "function",
                 "function": {"name": c.get("name"), "arguments": json.dumps(c.get("arguments") or {})}}
                for c in calls]})
            return StepPlan(node_id="route", next_node="tools")
        state["messages"].append({"role": "assistant", "content": content})
        return StepPlan(node_id="route", complete_output={  # the transcript without the ReAct system prompt
            "answer": content, "iterations": state["iteration"], "messages": copy.deepcopy(state["messages"][1:])})

    def tools(run: Any, ctx: Any) -> StepPlan:
        state, rt = _state(run), _ns(run, "_runtime")
        payload = {"tool_calls": copy.deepcopy(state.get("calls") or []),
                   "allowed_tools": [t for t in rt.get("allowed_tools") or [] if isinstance(t, str)]}
        return StepPlan(node_id="tools", effect=Effect(type="tool_calls", payload=payload,
                                                       result_key="_temp.react.tools"), next_node="observe")

    def observe(run: Any, ctx: Any) -> StepPlan:
        state = _state(run)
        outcome = state.get("tools") if isinstance(state.get("tools"), dict) else {}
        results = [r for r in outcome.get("results") or [] if isinstance(r, dict)]
        for call, result in zip(state.get("calls") or [], results):
            text = _render(result.get("output")) if result.get("success") else \
                f"Error: {result.get('error') or 'tool failed'}"
            state["messages"].append({"role": "tool", "tool_call_id": result.get("call_id") or call["call_id"],
                                      "name": result.get("name") or call.get("name"), "content": text})
        state.pop("calls", None)
        return StepPlan(node_id="observe", next_node="llm")

    return WorkflowSpec(workflow_id=workflow_id, entry_node="init",
                        nodes={"init": init, "llm": llm, "route": route, "tools": tools, "observe": observe})


def agent_workflow_ids(visual: Any) -> List[str]:
    """The ReAct workflow ids the agent nodes of ``visual`` (a VisualFlow or its JSON) start."""
    vf = visual if isinstance(visual, VisualFlow) else load_visualflow_json(visual)
    out: List[str] = []
    for node in vf.nodes:
        if node.type == "agent":
            wid = agent_workflow_id(node.data.get("agentConfig"), flow_id=vf.id, node_id=node.id)
            if wid not in out:
                out.append(wid)
    return out


def agent_workflow_specs(visual: Any, *, tool_specs: ToolSpecs = None) -> Dict[str, WorkflowSpec]:
    """``{workflow_id: default ReAct spec}`` for every agent node of ``visual``."""
    return {wid: default_react_workflow(wid, tool_specs=tool_specs) for wid in agent_workflow_ids(visual)}


def register_agent_workflows(registry: Any, visual: Any, *, tool_specs: ToolSpecs = None) -> List[str]:
    """Register the default ReAct workflow for each agent node of ``visual`` whose id ``registry`` lacks; returns
    the ids registered (a workflow the host registered under such an id is kept)."""
    added = []
    for wid, spec in agent_workflow_specs(visual, tool_specs=tool_specs).items():
        if registry.get(wid) is None:
            registry.register(spec)
            added.append(wid)
    return added


__all__ = ["REACT_SYSTEM_PROMPT", "default_react_workflow", "agent_workflow_ids", "agent_workflow_specs",
           "register_agent_workflows"]
