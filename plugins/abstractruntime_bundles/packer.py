"""Packing a root VisualFlow and the subflows it reaches into a ``.flow`` bundle (spec Part 1.3)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Union

from abstractruntime_pluginkit.jsonload import JsonTooDeepError, loads_bounded
from abstractruntime_storekit import write_atomic

from .manifest import (
    WorkflowBundleEntrypoint,
    WorkflowBundleError,
    WorkflowBundleManifest,
    WorkflowBundleNotFoundError,
    workflow_bundle_manifest_to_dict,
)


@dataclass
class PackedWorkflowBundle:
    path: Path
    manifest: WorkflowBundleManifest


def _node_type(node: Dict[str, Any]) -> str:
    data = node.get("data") if isinstance(node.get("data"), dict) else {}
    value = node.get("type") or data.get("nodeType")
    if isinstance(value, dict):
        value = value.get("value")
    text = str(value or "")
    return text[len("NodeType."):].lower() if text.startswith("NodeType.") else text


def _pins(data: Dict[str, Any]) -> List[Dict[str, Any]]:
    pins = []
    for key in ("inputs", "outputs"):
        if isinstance(data.get(key), list):
            pins += [p for p in data[key] if isinstance(p, dict)]
    return pins


def reachable_subflow_ids(flow: Dict[str, Any]) -> Dict[str, Optional[str]]:
    """``{node_id: subflow_id or None}`` for the subflow nodes that count (exec-reachable, see Part 1.3)."""
    nodes = [n for n in flow.get("nodes") or [] if isinstance(n, dict) and n.get("id") is not None]
    by_id = {str(n["id"]): n for n in nodes}
    exec_ids = [nid for nid, n in by_id.items()
                if any(p.get("type") == "execution" for p in _pins(n.get("data") or {}))]
    subflows = {nid: n for nid, n in by_id.items() if _node_type(n) == "subflow"}

    def sub_id(n: Dict[str, Any]) -> Optional[str]:
        data = n.get("data") if isinstance(n.get("data"), dict) else {}
        for key in ("subflowId", "flowId"):
            if isinstance(data.get(key), str) and data[key].strip():
                return data[key].strip()
        return None

    if not exec_ids:
        return {nid: sub_id(n) for nid, n in subflows.items()}
    edges = [e for e in flow.get("edges") or [] if isinstance(e, dict) and e.get("targetHandle") == "exec-in"]
    targets = {str(e.get("target")) for e in edges}
    roots: List[str] = []
    entry = flow.get("entryNode")
    if isinstance(entry, str) and entry in exec_ids:
        roots.append(entry)
    roots += [nid for nid in exec_ids if _node_type(by_id[nid]) == "on_event" and nid not in roots]
    if not roots:
        roots = [next((nid for nid in exec_ids if nid not in targets), exec_ids[0])]
    seen: Set[str] = set(roots)
    queue = list(roots)
    while queue:
        cur = queue.pop(0)
        for e in edges:
            if str(e.get("source")) == cur:
                t = str(e.get("target"))
                if t in by_id and t not in seen:
                    seen.add(t)
                    queue.append(t)
    return {nid: sub_id(n) for nid, n in subflows.items() if nid in seen}


def _load(path: Path) -> Dict[str, Any]:
    try:
        data = loads_bounded(path.read_bytes().decode("utf-8"), what=str(path))
    except JsonTooDeepError as exc:
        raise WorkflowBundleError(str(exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise WorkflowBundleError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WorkflowBundleError(f"{path}: a VisualFlow must be a JSON object")
    return data


def _flow_id(data: Dict[str, Any], path: Path) -> str:
    fid = data.get("id") or data.get("flow_id") or data.get("workflow_id")
    if not isinstance(fid, str) or not fid.strip():
        raise WorkflowBundleError(f"{path}: VisualFlow has no 'id'")
    return fid.strip()


def pack_workflow_bundle(
    *,
    root_flow_json: Union[str, Path],
    out_path: Union[str, Path],
    bundle_id: Optional[str] = None,
    bundle_version: str = "0.0.0",
    flows_dir: Optional[Union[str, Path]] = None,
    entrypoints: Optional[Sequence[str]] = None,
    default_entrypoint: Optional[str] = None,
    metadata: Optional[Dict[str, Any]] = None,
) -> PackedWorkflowBundle:
    """Pack ``root_flow_json`` and every subflow it reaches (``<flows_dir>/<id>.json``) into ``out_path``.

    The zip is written atomically (``abstractruntime_storekit.write_atomic``: a temporary file next to ``out_path``,
    fsynced and renamed into place).
    """
    root_path = Path(root_flow_json)
    if not root_path.is_file():
        raise WorkflowBundleNotFoundError(f"root flow not found: {root_path}")
    fdir = Path(flows_dir) if flows_dir is not None else root_path.parent
    if not fdir.is_dir():
        raise WorkflowBundleNotFoundError(f"flows directory not found: {fdir}")
    root = _load(root_path)
    root_id = _flow_id(root, root_path)
    collected: Dict[str, Dict[str, Any]] = {root_id: {"path": root_path, "data": root}}
    queue = [root_id]
    missing: List[str] = []
    while queue:
        fid = queue.pop(0)
        for node_id, sub in reachable_subflow_ids(collected[fid]["data"]).items():
            if sub is None:
                missing.append(f"subflow node '{node_id}' in flow '{fid}' has no subflowId")
                continue
            if sub in collected:
                continue
            path = fdir / f"{sub}.json"
            if "/" in sub or "\\" in sub or sub in (".", "..") or not path.is_file():
                missing.append(f"flow '{sub}' (expected {path}, referenced by '{fid}.{node_id}')")
                continue
            data = _load(path)
            collected[sub] = {"path": path, "data": data}
            queue.append(sub)
    if missing:
        raise WorkflowBundleError("cannot pack: missing subflows: " + "; ".join(missing))
    ep_ids = list(entrypoints) if entrypoints else [root_id]
    eps = []
    for fid in ep_ids:
        if fid not in collected:
            raise WorkflowBundleError(f"entrypoint '{fid}' is not one of the packed flows ({', '.join(collected)})")
        data = collected[fid]["data"]
        name = data.get("name") if isinstance(data.get("name"), str) and data.get("name").strip() else fid
        desc = data.get("description") if isinstance(data.get("description"), str) else ""
        ifaces = [i.strip() for i in data.get("interfaces") or [] if isinstance(i, str) and i.strip()] \
            if isinstance(data.get("interfaces"), list) else []
        eps.append(WorkflowBundleEntrypoint(flow_id=fid, name=name, description=desc, interfaces=ifaces))
    if default_entrypoint not in ep_ids:
        default_entrypoint = root_id if root_id in ep_ids else ep_ids[0]
    manifest = WorkflowBundleManifest(
        bundle_id=bundle_id or root_id, bundle_version=bundle_version,
        created_at=datetime.now(timezone.utc).isoformat(), entrypoints=eps, default_entrypoint=default_entrypoint,
        flows={fid: f"flows/{fid}.json" for fid in collected}, metadata=dict(metadata or {}),
    )
    manifest_json = json.dumps(workflow_bundle_manifest_to_dict(manifest), indent=2, ensure_ascii=False)
    buf = io.BytesIO()  # flows are small JSON files: build the zip in memory, then write it in one atomic step
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", manifest_json)
        for fid, item in collected.items():
            zf.writestr(f"flows/{fid}.json", item["path"].read_bytes())
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buf.getvalue())
    return PackedWorkflowBundle(path=out, manifest=manifest)


__all__ = ["PackedWorkflowBundle", "pack_workflow_bundle", "reachable_subflow_ids"]
