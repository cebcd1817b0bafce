"""Workflow ids of the ReAct subworkflows behind ``agent`` nodes (reference ``visual.agent_ids``)."""

from __future__ import annotations

import re
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _part(value: Any) -> str:
    text = _UNSAFE.sub("_", str(value if value is not None else "").strip())
    return text or "unknown"


def visual_react_workflow_id(*, flow_id: str, node_id: str) -> str:
    """``visual_react_agent_<flow_id>_<node_id>``: each part stripped, every run of characters outside
    ``[A-Za-z0-9_-]`` replaced by one ``_``, an empty part replaced by ``unknown`` (VAM §1.1)."""
    return f"visual_react_agent_{_part(flow_id)}_{_part(node_id)}"


__all__ = ["visual_react_workflow_id"]
