"""The run page's flow graph (inline SVG) of VisualFlow runs and its snapshots list, through Starlette's TestClient
on real LMDB stores and real `.flow` bundles."""

from __future__ import annotations

import contextlib
import io
import json
import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("starlette")
warnings.filterwarnings("ignore", message=".*httpx.*")
from starlette.testclient import TestClient  # noqa: E402

import abstractruntime_web  # noqa: E402
from web_support import GROCERIES, XSS, open_runtime, start_groceries, waiting_run  # noqa: E402

GROCERY_NODES = ["start", "ask", "init", "each", "call", "current", "append", "acc", "all", "text", "say", "end"]


@pytest.fixture
def rt(tmp_path):
    runtime = open_runtime(tmp_path / "store")
    yield runtime
    runtime.close()


def _nodes(html: str) -> dict:
    """``{node id: its classes besides "node"}`` of the graph's node groups (ids unescaped)."""
    found = re.findall(r'<g class="node([^"]*)" data-node="([^"]*)"', html)
    return {node.replace("&lt;", "<").replace("&gt;", ">").replace("&#34;", '"').replace("&amp;", "&"):
            set(cls.split()) for cls, node in found}


def _csrf(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def test_a_groceries_run_shows_its_flow_with_visited_and_current_nodes(tmp_path):
    run_id = start_groceries(tmp_path / "store")
    rt = open_runtime(tmp_path / "store")
    try:
        client = TestClient(abstractruntime_web.app(rt))
        html = client.get(f"/runs/{run_id}").text
        assert '<svg xmlns="http://www.w3.org/2000/svg" class="flow"' in html and "bundle groceries@1.0.0" in html
        nodes = _nodes(html)
        assert sorted(nodes) == sorted(GROCERY_NODES)
        assert "current" in nodes["ask"] and nodes["start"] == {"visited"}
        assert nodes["each"] == set() and nodes["say"] == set()
        assert [n for n, c in nodes.items() if "current" in c] == ["ask"]
        assert 'class="edge exec"' in html and 'class="edge data"' in html
        assert 'data-source="each" data-target="say"' in html
        # the fragment the page polls draws it too
        assert "current" in _nodes(client.get(f"/runs/{run_id}/fragment").text)["ask"]

        client.post(f"/runs/{run_id}/answer", data={"csrf": _csrf(html), "response": "Ada"})
        assert rt.get_state(run_id).status.value == "completed"
        nodes = _nodes(client.get(f"/runs/{run_id}").text)
        assert [n for n, c in nodes.items() if "current" in c] == ["end"]
        assert all("visited" in nodes[n] for n in ("start", "ask", "init", "each", "call", "acc", "say"))
        # a subflow child: the graph of its own flow, from the root run's bundle
        child = rt.run_store.list_children(parent_run_id=run_id)[0]
        assert sorted(_nodes(client.get(f"/runs/{child.run_id}").text)) == ["e", "s", "up"]
    finally:
        rt.close()


def test_a_run_that_is_no_visualflow_run_has_no_graph(rt):
    run_id = waiting_run(rt)
    html = TestClient(abstractruntime_web.app(rt)).get(f"/runs/{run_id}").text
    assert "flow-graph" not in html and "<svg" not in html


def _flow_bundle(directory: Path, flow: dict) -> Path:
    (directory / "flows").mkdir(parents=True)
    manifest = {"bundle_format_version": "1", "bundle_id": "drawn", "bundle_version": "1.0.0",
                "created_at": "2026-01-01T00:00:00+00:00", "entrypoints": [{"flow_id": flow["id"], "name": "d"}],
                "flows": {flow["id"]: f"flows/{flow['id']}.json"}, "default_entrypoint": flow["id"]}
    (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (directory / "flows" / f"{flow['id']}.json").write_text(json.dumps(flow), encoding="utf-8")
    return directory


def _exec(node_id: str, node_type: str, x: int, y: int, **data: object) -> dict:
    return {"id": node_id, "type": node_type, "position": {"x": x, "y": y},
            "data": {"inputs": [{"id": "exec-in", "type": "execution"}],
                     "outputs": [{"id": "exec-out", "type": "execution"}], **data}}


def test_positions_from_the_flow_and_node_names_are_escaped(tmp_path):
    """Every node has a ``position``: the graph uses them (shifted to the margin); a node id holding markup is
    drawn as text."""
    from abstractruntime_cli.main import main

    flow = {"id": "drawn", "entryNode": "begin", "nodes": [
        _exec("begin", "on_flow_start", 100, 300),
        _exec(XSS, "ask_user", 400, 500, pinDefaults={"prompt": "Go?"}),
        _exec("finish", "on_flow_end", 700, 300)],
        "edges": [{"source": "begin", "sourceHandle": "exec-out", "target": XSS, "targetHandle": "exec-in"},
                  {"source": XSS, "sourceHandle": "exec-out", "target": "finish", "targetHandle": "exec-in"}]}
    bundle = _flow_bundle(tmp_path / "drawn_bundle", flow)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--store", f"lmdb://{tmp_path / 'store'}", "--json", "flow", "run", str(bundle)]) == 0
    run_id = json.loads(out.getvalue())["waiting_run_id"]
    rt = open_runtime(tmp_path / "store")
    try:
        html = TestClient(abstractruntime_web.app(rt)).get(f"/runs/{run_id}").text
        assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        nodes = _nodes(html)
        assert "current" in nodes[XSS] and nodes["begin"] == {"visited"} and nodes["finish"] == set()
        assert 'data-node="begin" transform="translate(16,16)"' in html
        assert 'data-node="finish" transform="translate(616,16)"' in html
        assert 'transform="translate(316,216)"' in html  # the XSS node: (400, 500) - (100, 300) + 16
    finally:
        rt.close()


def test_a_visualflow_workflow_passed_by_the_host_is_drawn(rt):
    """No bundle: the graph comes from the compiled workflow the console was given (a layered layout)."""
    from abstractruntime_visualflow import compile_visualflow

    flow = {"id": "hosted", "entryNode": "a", "nodes": [
        _exec("a", "on_flow_start", 0, 0), _exec("b", "ask_user", 0, 0, pinDefaults={"prompt": "Ok?"}),
        _exec("c", "on_flow_end", 0, 0)],
        "edges": [{"source": "a", "sourceHandle": "exec-out", "target": "b", "targetHandle": "exec-in"},
                  {"source": "b", "sourceHandle": "exec-out", "target": "c", "targetHandle": "exec-in"}]}
    spec = compile_visualflow(flow, runtime=rt)
    run_id = rt.start(workflow=spec)
    rt.tick(workflow=spec, run_id=run_id)
    html = TestClient(abstractruntime_web.app(rt, workflows=[spec])).get(f"/runs/{run_id}").text
    assert "(workflow)" in html
    nodes = _nodes(html)
    assert nodes["a"] == {"visited"} and "current" in nodes["b"] and nodes["c"] == set()
    # left to right along the execution edges
    xs = {n: int(x) for n, x in re.findall(r'data-node="(\w)" transform="translate\((\d+),', html)}
    assert xs["a"] < xs["b"] < xs["c"]


def test_the_run_page_lists_the_runs_snapshots(rt):
    run_id = waiting_run(rt)
    client = TestClient(abstractruntime_web.app(rt))
    html = client.get(f"/runs/{run_id}").text
    assert 'id="snapshots"' in html and "No snapshots of this run" in html
    snap = rt.create_snapshot(run_id, name=f"before {XSS}", tags=["review"])
    other = waiting_run(rt)
    rt.create_snapshot(other, name="someone else's")
    html = client.get(f"/runs/{run_id}/fragment").text
    section = html[html.index('id="snapshots"'):html.index("</section>", html.index('id="snapshots"'))]
    assert snap.snapshot_id in section and "before &lt;script&gt;" in section and "review" in section
    assert snap.created_at in section and "someone else" not in section and XSS not in html
