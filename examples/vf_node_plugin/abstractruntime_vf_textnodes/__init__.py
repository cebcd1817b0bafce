"""Example third-party node types for VisualFlow: ``slugify`` (pure) and ``notify`` (effect)."""

from __future__ import annotations

import re
from typing import Any, Dict, List

from abstractruntime import hookimpl
from abstractruntime_visualflow import EffectMapping, VisualNodeType


def slugify(inputs: Dict[str, Any]) -> Dict[str, Any]:
    text = str(inputs.get("text") or "")
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return {"slug": slug}


def _notify_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    prefix = ctx.config.get("prefix", "[notice]")
    return {"message": f"{prefix} {inputs.get('text') or ''}".strip(), "level": "warning"}


@hookimpl
def abstractruntime_register_visual_node_types() -> List[VisualNodeType]:
    return [
        VisualNodeType("slugify", handler=slugify, inputs=["text"], outputs=["slug"], pure=True,
                       description="text -> url-friendly slug"),
        VisualNodeType("notify", effect=EffectMapping("answer_user", _notify_payload, main_output="message"),
                       inputs=[("exec-in", "execution"), "text"], outputs=[("exec-out", "execution"), "message"],
                       description="sends a warning-level message to the user"),
    ]
