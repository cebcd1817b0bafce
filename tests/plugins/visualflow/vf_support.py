"""Helpers for the VisualFlow / bundle tests: compact graph builders and real runtimes (no mocks)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from abstractruntime import Runtime, WorkflowRegistry

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "flows"
REPO = HERE.parents[2]
EXEC_PIN = re.compile(r"^(exec-in|exec-out|true|false|loop|done|completed|default|then:.*|case:.*)$")


def load(name: str) -> Dict[str, Any]:
    return json.loads((FLOWS / f"{name}.json").read_text())


def _pins(spec: str) -> List[Dict[str, str]]:
    out = []
    for word in spec.split():
        name, _, typ = word.partition("/")
        out.append({"id": name, "type": "execution" if EXEC_PIN.match(name) and not typ else (typ or "any")})
    return out


def N(node_id: str, node_type: str, ins: Optional[str] = None, outs: Optional[str] = None, **data: Any) -> Dict:
    """A node; ``ins``/``outs`` are space-separated pin ids (``name/type`` for a data type; exec pins by name)."""
    d = dict(data)
    if ins is not None:
        d["inputs"] = _pins(ins)
    if outs is not None:
        d["outputs"] = _pins(outs)
    return {"id": node_id, "type": node_type, "data": d}


def E(src: str, dst: str) -> Dict[str, str]:
    """An edge ``"a.pin" -> "b.pin"``."""
    s, sh = src.split(".", 1)
    t, th = dst.split(".", 1)
    return {"source": s, "sourceHandle": sh, "target": t, "targetHandle": th}


def chain(*ids: str) -> List[Dict[str, str]]:
    return [E(f"{a}.exec-out", f"{b}.exec-in") for a, b in zip(ids, ids[1:])]


def flow(flow_id: str, nodes: List[Dict], edges: List[Dict], entry: Optional[str] = None) -> Dict[str, Any]:
    out = {"id": flow_id, "nodes": nodes, "edges": edges}
    if entry:
        out["entryNode"] = entry
    return out


def memory_runtime(**kwargs: Any) -> Runtime:
    from abstractruntime_inmemory.store import MemoryBackend

    backend = MemoryBackend()
    kwargs.setdefault("workflow_registry", WorkflowRegistry())
    return Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store, **kwargs)


def run(rt: Runtime, spec: Any, vars: Optional[Dict[str, Any]] = None, **kw: Any):
    if spec.workflow_id not in rt.workflow_registry:
        rt.workflow_registry.register(spec)
    run_id = rt.start(workflow=spec, vars=vars, **kw)
    return rt.tick(workflow=spec, run_id=run_id, max_steps=10_000)


def entry_point_env(tmp_path: Path) -> Dict[str, str]:
    """Environment for a CLI subprocess: ours, without the developer's ABSTRACTRUNTIME_* configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
