"""Workflow ids of the ReAct subworkflows behind ``agent`` nodes (reference ``visual.agent_ids``)."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def visual_react_workflow_id(*, flow_id: str, node_id: str) -> str:
    """``visual_react_agent_<flow_id>_<node_id>``, runs of characters outside ``[A-Za-z0-9_-]`` replaced by ``_``."""
    return _UNSAFE.sub("_", f"visual_react_agent_{flow_id}_{node_id}")


__all__ = ["visual_react_workflow_id"]
