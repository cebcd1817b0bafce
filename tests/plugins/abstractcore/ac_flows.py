"""Workflows and tools shared by the AbstractCore integration tests (also imported by subprocesses)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List

from abstractruntime import Effect, EffectType, StepPlan, WorkflowSpec

ADD_SPEC = {"name": "add", "description": "Add two integers",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                           "required": ["a", "b"]}}
SLOW_ADD_SPEC = dict(ADD_SPEC, name="slow_add", description="Add two integers, slowly")
MAX_TURNS = 5


def _llm(run, ctx):
    return StepPlan(node_id="llm", effect=Effect(EffectType.LLM_CALL, {
        "messages": run.vars["messages"], "tools": run.vars.get("tool_specs", [ADD_SPEC]), "system_prompt": "You can add numbers."},
        result_key="llm"), next_node="route")


def _route(run, ctx):
    llm = run.vars["llm"]
    run.vars["turns"] = run.vars.get("turns", 0) + 1
    if llm.get("tool_calls") and run.vars["turns"] < MAX_TURNS:
        return StepPlan(node_id="route", next_node="tools")
    return StepPlan(node_id="route", complete_output={"answer": llm.get("content"), "turns": run.vars["turns"]})


def _tools(run, ctx):
    return StepPlan(node_id="tools", effect=Effect(EffectType.TOOL_CALLS, {
        "tool_calls": run.vars["llm"]["tool_calls"], "allowed_tools": run.vars.get("allowed_tools", ["add"])},
        result_key="tool_results"), next_node="observe")


def _observe(run, ctx):
    observations = [{"name": r["name"], "success": r["success"], "output": r["output"], "error": r["error"]}
                    for r in run.vars["tool_results"]["results"]]
    run.vars["messages"] = run.vars["messages"] + [
        {"role": "user", "content": "Tool results: " + json.dumps(observations)}]
    return StepPlan(node_id="observe", next_node="llm")


REACT = WorkflowSpec(workflow_id="react", entry_node="llm",
                     nodes={"llm": _llm, "route": _route, "tools": _tools, "observe": _observe})


def react_vars(question: str = "What is 2 + 3?") -> Dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}]}


class LoggedTools:
    """Tools that append each execution to a file (the 'outside world' a crash test inspects)."""

    def __init__(self, log_path: str) -> None:
        self.log = Path(log_path)

    def _record(self, name: str, args: Dict[str, Any]) -> None:
        with self.log.open("a") as fh:
            fh.write(json.dumps({"tool": name, "args": args, "pid": os.getpid()}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def add(self, a: int, b: int) -> int:
        self._record("add", {"a": a, "b": b})
        return a + b

    def executions(self) -> List[Dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
