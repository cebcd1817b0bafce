"""VisualFlow JSON: the stdlib dataclasses of the reference and ``load_visualflow_json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from abstractruntime_pluginkit.jsonload import JsonTooDeepError, check_value_depth

from .errors import VisualFlowError, VisualFlowTypeError


def normalize_node_type(value: Any) -> str:
    """``"NodeType.ASK_USER"`` / ``{"value": "ask_user"}`` / ``"ask_user"`` -> ``"ask_user"``."""
    if isinstance(value, dict):
        value = value.get("value")
    if value is None:
        return ""
    text = str(getattr(value, "value", value)).strip()
    if text.startswith("NodeType."):
        text = text[len("NodeType."):].lower()
    return text


@dataclass
class VisualNode:
    id: str
    type: str
    data: Dict[str, Any] = field(default_factory=dict)


@dataclass
class VisualEdge:
    source: str
    target: str
    sourceHandle: str
    targetHandle: str


@dataclass
class VisualFlow:
    id: str
    name: str = ""
    description: str = ""
    interfaces: List[str] = field(default_factory=list)
    nodes: List[VisualNode] = field(default_factory=list)
    edges: List[VisualEdge] = field(default_factory=list)
    entryNode: Optional[str] = None


def _as_dict(raw: Any) -> Dict[str, Any]:
    if isinstance(raw, VisualFlow):
        return {
            "id": raw.id, "name": raw.name, "description": raw.description, "interfaces": list(raw.interfaces),
            "entryNode": raw.entryNode,
            "nodes": [{"id": n.id, "type": n.type, "data": n.data} for n in raw.nodes],
            "edges": [{"source": e.source, "target": e.target, "sourceHandle": e.sourceHandle,
                       "targetHandle": e.targetHandle} for e in raw.edges],
        }
    if isinstance(raw, dict):
        return raw
    dump = getattr(raw, "model_dump", None)
    if callable(dump):
        try:
            data = dump(mode="json")
        except TypeError:
            data = dump()
        if isinstance(data, dict):
            return data
    as_dict = getattr(raw, "dict", None)
    if callable(as_dict):
        data = as_dict()
        if isinstance(data, dict):
            return data
    raise VisualFlowTypeError(
        f"load_visualflow_json expects a dict (or an object with model_dump()/dict()), got {type(raw).__name__}"
    )


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _non_empty_str(value: Any) -> Optional[str]:
    if isinstance(value, str) and value.strip():
        return value
    return None


def load_visualflow_json(raw: Any) -> VisualFlow:
    """Parse VisualFlow JSON (a dict, a ``VisualFlow``, or a pydantic-like object) into :class:`VisualFlow`.

    Malformed nodes (non-dict, no ``id``) and edges (non-dict, missing ``source``/``target``/``sourceHandle``/
    ``targetHandle``) are skipped; unknown fields are ignored. No pin-id migration. A flow nested more than 200
    levels deep is refused (:class:`VisualFlowError`) before anything walks it.
    """
    data = _as_dict(raw)
    try:
        check_value_depth(data, what="the VisualFlow")
    except JsonTooDeepError as exc:
        raise VisualFlowError(str(exc)) from None
    flow_id = data.get("id") or data.get("flow_id") or data.get("workflow_id")
    if not isinstance(flow_id, str) or not flow_id.strip():
        raise VisualFlowError("VisualFlow missing required 'id'")
    interfaces = [i.strip() for i in (data.get("interfaces") or []) if isinstance(i, str) and i.strip()] \
        if isinstance(data.get("interfaces"), list) else []
    nodes: List[VisualNode] = []
    for raw_node in data.get("nodes") or []:
        if not isinstance(raw_node, dict):
            continue
        node_id = raw_node.get("id")
        if node_id is None or (isinstance(node_id, str) and not node_id.strip()):
            continue
        node_data = raw_node.get("data") if isinstance(raw_node.get("data"), dict) else {}
        node_type = normalize_node_type(raw_node.get("type") or node_data.get("nodeType"))
        node_data = dict(node_data)
        pin_defaults = node_data.get("pinDefaults")
        if isinstance(pin_defaults, dict):
            node_data["pinDefaults"] = {
                k: v for k, v in pin_defaults.items() if isinstance(k, str) and k and _json_safe(v)
            }
        nodes.append(VisualNode(id=str(node_id), type=node_type, data=node_data))
    edges: List[VisualEdge] = []
    for raw_edge in data.get("edges") or []:
        if not isinstance(raw_edge, dict):
            continue
        parts = [raw_edge.get(k) for k in ("source", "target", "sourceHandle", "targetHandle")]
        if not all(_non_empty_str(p) for p in parts):
            continue
        edges.append(VisualEdge(*[str(p) for p in parts]))
    entry = data.get("entryNode")
    return VisualFlow(
        id=flow_id.strip(),
        name=data.get("name") if isinstance(data.get("name"), str) else "",
        description=data.get("description") if isinstance(data.get("description"), str) else "",
        interfaces=interfaces,
        nodes=nodes,
        edges=edges,
        entryNode=entry if isinstance(entry, str) and entry.strip() else None,
    )


__all__ = ["VisualFlow", "VisualNode", "VisualEdge", "load_visualflow_json", "normalize_node_type"]
