"""Node family: the ``agent`` node (VAM §1) -- a ReAct subworkflow run as a phase machine (:mod:`..agent_node`)."""

from __future__ import annotations

from typing import List

from ..agent_inputs import resolve_agent_inputs
from ..agent_node import agent_outputs, agent_step
from ..nodetypes import LAST_OUTPUT_BASE, VisualNodeType


def _resolved_inputs(inputs, ctx):
    """``Flow`` node handler / dry evaluation: the agent's resolved inputs (VAM §1.2)."""
    cfg = ctx.data.get("agentConfig") if ctx is not None else None
    return resolve_agent_inputs(inputs, cfg if isinstance(cfg, dict) else {})


def agent_node_types() -> List[VisualNodeType]:
    X = "execution"
    return [
        VisualNodeType(
            "agent", step=agent_step, map_result=agent_outputs, evaluate=_resolved_inputs, main_output="response",
            base_input=LAST_OUTPUT_BASE,
            inputs=[("exec-in", X), "prompt", "context", "system", "tools", "provider", "model", "include_context",
                    "max_iterations", "response_schema", "memory"],
            outputs=[("exec-out", X), "response", "success", "meta", "scratchpad", "tool_calls", "tool_results"],
            description="ReAct agent: START_SUBWORKFLOW of visual_react_workflow_id(...) (the default ReAct workflow "
                        "unless the host registers its own), then optional structured output"),
    ]


__all__ = ["agent_node_types"]
