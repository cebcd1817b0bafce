"""The flow graph of a VisualFlow run: nodes and edges laid out for an inline SVG (drawn by
``templates/graph.html``, autoescaped), with the visited nodes and the current one marked.

The flow is found, in this order: the ``.flow`` bundle the run's root run was started from (``vars._visualflow``,
written by ``abstractruntime flow run``; the flow whose id is the run's workflow id), then a workflow compiled
from a VisualFlow that the console knows (``app(workflows=[...])``, the runtime's registry). Positions are the
flow JSON's node ``position`` (``{"x": .., "y": ..}``) when every node has one; otherwise a layered layout, left
to right along the edges (longest path from the entry; nodes that only feed others sit just before them).
Visited nodes: the entry once the run has taken a step, the execution nodes with outputs in the run's
``_temp.node_outputs`` (docs/visualflow.md) and every node with a record in the ledger rows read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from abstractruntime.logs import get_logger
from abstractruntime.models import RunState

log = get_logger("abstractruntime.web")

NODE_W, NODE_H, COL_GAP, ROW_GAP, MARGIN = 150, 44, 60, 26, 16
#: a larger flow is not drawn (the page says so)
MAX_NODES = 300
_META_KEY = "_visualflow"
_CACHE: "OrderedDict[Tuple[str, int, int], Dict[str, Any]]" = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _bundle_flows(path: str) -> Optional[Dict[str, Any]]:
    """``{flow_id: flow JSON}`` of a bundle, cached by path, size and mtime; None if it cannot be read."""
    from abstractruntime_bundles.reader import open_workflow_bundle

    try:
        st = Path(path).stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    try:
        flows = open_workflow_bundle(path).flows()
    except Exception as exc:  # a bundle that cannot be read any more: no graph, the rest of the page stays
        log.info("web.graph_bundle_unreadable", bundle=str(path), error=str(exc))
        return None
    with _CACHE_LOCK:
        _CACHE[key] = flows
        while len(_CACHE) > 16:
            _CACHE.popitem(last=False)
    return flows


def _from_bundle(runtime: Any, state: RunState) -> Optional[Tuple[Dict[str, Any], str]]:
    from abstractruntime_visualflow.drive import root_run

    root = root_run(runtime, state.run_id)
    meta = root.vars.get(_META_KEY) if isinstance(root.vars, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("bundle"), str):
        return None
    flows = _bundle_flows(meta["bundle"])
    if not flows:
        return None
    flow = flows.get(state.workflow_id)
    if not isinstance(flow, dict):
        flow = next((f for f in flows.values() if isinstance(f, dict) and f.get("id") == state.workflow_id), None)
    return (flow, f"bundle {meta.get('bundle_ref') or meta['bundle']}") if isinstance(flow, dict) else None


def _from_spec(runtime: Any, state: RunState, workflows: Mapping[str, Any]) -> Optional[Tuple[Dict[str, Any], str]]:
    """The graph of a workflow compiled from a VisualFlow (its handlers hold the analysed flow; no positions)."""
    from abstractruntime_visualflow.compiler import VisualNodeHandler

    spec = workflows.get(state.workflow_id)
    registry = getattr(runtime, "workflow_registry", None)
    if spec is None and registry is not None:
        spec = registry.get(state.workflow_id)
    handler = next((h for h in (getattr(spec, "nodes", None) or {}).values() if isinstance(h, VisualNodeHandler)),
                   None)
    if handler is None:
        return None
    cflow = handler.flow
    nodes = [{"id": n.id, "type": n.type} for n in cflow.nodes.values()]
    edges = [{"source": n.id, "target": t, "kind": "exec"} for n in cflow.nodes.values() for t in n.exec_out.values()]
    edges += [{"source": src, "target": n.id, "kind": "data"} for n in cflow.nodes.values()
              for src, _h in n.data_in.values()]
    return {"id": cflow.id, "entryNode": cflow.entry, "nodes": nodes, "edges": edges}, "workflow"


def _exec_pins(node: Dict[str, Any], side: str) -> Optional[Set[str]]:
    pins = (node.get("data") or {}).get(side) if isinstance(node.get("data"), dict) else None
    if not isinstance(pins, list):
        return None
    return {p.get("id") for p in pins if isinstance(p, dict) and p.get("type") == "execution"}


def _edge_kind(edge: Dict[str, Any], by_id: Dict[str, Dict[str, Any]]) -> str:
    if edge.get("kind") in ("exec", "data"):
        return edge["kind"]
    out_pins = _exec_pins(by_id.get(edge["source"], {}), "outputs")
    if out_pins is not None and edge.get("sourceHandle") in out_pins:
        return "exec"
    in_pins = _exec_pins(by_id.get(edge["target"], {}), "inputs")
    if in_pins is not None and edge.get("targetHandle") in in_pins:
        return "exec"
    if out_pins is None and in_pins is None and str(edge.get("sourceHandle", "")).startswith("exec"):
        return "exec"
    return "data"


def _layers(order: List[str], edges: List[Tuple[str, str]], entry: Optional[str]) -> Dict[str, int]:
    """Longest-path layers of the graph without its back edges (found by a depth-first walk from the entry)."""
    succ: Dict[str, List[str]] = {n: [] for n in order}
    for s, t in edges:
        succ[s].append(t)
    state: Dict[str, int] = {}  # 1: on the walk's stack, 2: done
    forward: List[Tuple[str, str]] = []
    roots = ([entry] if entry in succ else []) + [n for n in order if n != entry]
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) != 1:  # not a back edge
                forward.append((node, nxt))
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, iter(succ[nxt])))
    preds: Dict[str, List[str]] = {n: [] for n in order}
    fsucc: Dict[str, List[str]] = {n: [] for n in order}
    for s, t in forward:
        preds[t].append(s)
        fsucc[s].append(t)
    indeg = {n: len(preds[n]) for n in order}
    topo, queue = [], [n for n in order if indeg[n] == 0]
    while queue:
        n = queue.pop(0)
        topo.append(n)
        for t in fsucc[n]:
            indeg[t] -= 1
            if indeg[t] == 0:
                queue.append(t)
    layer = {n: 0 for n in order}
    for n in topo:
        for t in fsucc[n]:
            layer[t] = max(layer[t], layer[n] + 1)
    for n in reversed(topo):  # a node that only feeds others (a getter, a literal) sits just before them
        if not preds[n] and n != entry and fsucc[n]:
            layer[n] = max(0, min(layer[t] for t in fsucc[n]) - 1)
    return layer


def _positions(flow_nodes: List[Dict[str, Any]], edges: List[Tuple[str, str]],
               entry: Optional[str]) -> Dict[str, Tuple[float, float]]:
    given = [n.get("position") for n in flow_nodes]
    if all(isinstance(p, dict) and isinstance(p.get("x"), (int, float)) and isinstance(p.get("y"), (int, float))
           for p in given):
        xs, ys = [p["x"] for p in given], [p["y"] for p in given]  # type: ignore[index]
        return {n["id"]: (float(p["x"]) - min(xs) + MARGIN, float(p["y"]) - min(ys) + MARGIN)  # type: ignore[index]
                for n, p in zip(flow_nodes, given)}
    order = [n["id"] for n in flow_nodes]
    layer = _layers(order, edges, entry)
    columns: Dict[int, List[str]] = {}
    for n in order:
        columns.setdefault(layer[n], []).append(n)
    preds: Dict[str, List[str]] = {n: [] for n in order}
    for s, t in edges:
        preds[t].append(s)
    row: Dict[str, float] = {}

    def barycenter(n: str, fallback: int) -> float:
        placed = [row[p] for p in preds[n] if p in row]
        return sum(placed) / len(placed) if placed else float(fallback)

    for col in sorted(columns):  # one barycenter pass: a node near the nodes that lead to it
        members = columns[col]
        keys = {n: barycenter(n, i) for i, n in enumerate(members)}
        for i, n in enumerate(sorted(members, key=lambda m: keys[m])):
            row[n] = float(i)
    return {n: (MARGIN + layer[n] * (NODE_W + COL_GAP), MARGIN + row[n] * (NODE_H + ROW_GAP)) for n in order}


def _edge_path(a: Tuple[float, float], b: Tuple[float, float]) -> str:
    x1, y1 = a[0] + NODE_W, a[1] + NODE_H / 2
    x2, y2 = b[0], b[1] + NODE_H / 2
    dx = max(40.0, abs(x2 - x1) / 2)
    return f"M{x1:.0f},{y1:.0f} C{x1 + dx:.0f},{y1:.0f} {x2 - dx:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"


def flow_graph(runtime: Any, state: RunState, records: Iterable[Dict[str, Any]],
               workflows: Optional[Mapping[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """The graph of ``state``'s flow for the run page (None: not a VisualFlow run the console can find)."""
    found = _from_bundle(runtime, state) or _from_spec(runtime, state, workflows or {})
    if found is None:
        return None
    flow, source = found
    flow_nodes = [n for n in flow.get("nodes") or [] if isinstance(n, dict) and isinstance(n.get("id"), str)]
    if len(flow_nodes) > MAX_NODES:
        return {"flow_id": flow.get("id"), "source": source, "too_large": len(flow_nodes)}
    by_id = {n["id"]: n for n in flow_nodes}
    raw_edges = [e for e in flow.get("edges") or [] if isinstance(e, dict)
                 and e.get("source") in by_id and e.get("target") in by_id]
    entry = flow.get("entryNode") if flow.get("entryNode") in by_id else None
    pos = _positions(flow_nodes, [(e["source"], e["target"]) for e in raw_edges], entry)
    visited = {r.get("node_id") for r in records if isinstance(r, dict)}
    temp = state.vars.get("_temp") if isinstance(state.vars, dict) else None
    outputs = temp.get("node_outputs") if isinstance(temp, dict) else None
    visited.update(outputs if isinstance(outputs, dict) else ())
    if entry is not None and state.step > 0:
        visited.add(entry)
    nodes = []
    for n in flow_nodes:
        x, y = pos[n["id"]]
        classes = ["node"] + (["visited"] if n["id"] in visited else []) + \
            (["current"] if n["id"] == state.current_node else [])
        nodes.append({"id": n["id"], "type": str(n.get("type") or ""), "x": round(x), "y": round(y),
                      "class": " ".join(classes), "label": n["id"][:22], "sublabel": str(n.get("type") or "")[:24]})
    edges = [{"kind": _edge_kind(e, by_id), "d": _edge_path(pos[e["source"]], pos[e["target"]]),
              "source": e["source"], "target": e["target"]} for e in raw_edges]
    width = max((p[0] for p in pos.values()), default=0) + NODE_W + MARGIN
    height = max((p[1] for p in pos.values()), default=0) + NODE_H + MARGIN
    return {"flow_id": flow.get("id"), "source": source, "too_large": None, "nodes": nodes, "edges": edges,
            "width": round(width), "height": round(height), "node_w": NODE_W, "node_h": NODE_H,
            "current": state.current_node, "visited": sorted(v for v in visited if v in by_id)}


__all__ = ["flow_graph", "MAX_NODES"]
