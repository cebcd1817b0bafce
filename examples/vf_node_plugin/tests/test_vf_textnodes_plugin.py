"""The example node-type plugin is found through its entry point; its nodes compile and run (strict mode)."""

from abstractruntime import Runtime, RunStatus
from abstractruntime_visualflow import compile_visualflow, load_node_types

FLOW = {
    "id": "slug_demo", "entryNode": "s",
    "nodes": [
        {"id": "s", "type": "on_flow_start", "data": {"outputs": [{"id": "exec-out", "type": "execution"},
                                                                   {"id": "title", "type": "string"}]}},
        {"id": "slug", "type": "slugify", "data": {}},
        {"id": "n", "type": "notify", "data": {"inputs": [{"id": "exec-in", "type": "execution"},
                                                          {"id": "text", "type": "string"}],
                                               "outputs": [{"id": "exec-out", "type": "execution"}],
                                               "effectConfig": {"prefix": "[new]"}}},
        {"id": "e", "type": "on_flow_end", "data": {"inputs": [{"id": "exec-in", "type": "execution"},
                                                               {"id": "slug", "type": "string"},
                                                               {"id": "said", "type": "string"}]}},
    ],
    "edges": [
        {"source": "s", "sourceHandle": "exec-out", "target": "n", "targetHandle": "exec-in"},
        {"source": "n", "sourceHandle": "exec-out", "target": "e", "targetHandle": "exec-in"},
        {"source": "s", "sourceHandle": "title", "target": "slug", "targetHandle": "text"},
        {"source": "slug", "sourceHandle": "slug", "target": "n", "targetHandle": "text"},
        {"source": "slug", "sourceHandle": "slug", "target": "e", "targetHandle": "slug"},
        {"source": "n", "sourceHandle": "message", "target": "e", "targetHandle": "said"},
    ],
}


def test_node_types_are_discovered_through_the_entry_point():
    rt = Runtime.from_config({"store": "memory://"})
    info = {p.name: p for p in rt.plugins()}["vf_textnodes"]
    assert info.status == "loaded" and info.distribution == "abstractruntime-vf-textnodes"
    assert {"slugify", "notify"} <= set(load_node_types(runtime=rt))


def test_a_flow_using_the_plugin_nodes_runs(tmp_path):
    spec = compile_visualflow(FLOW, strict=True)
    with Runtime.from_config({"store": f"lmdb://{tmp_path}/store"}) as rt:
        run_id = rt.start(workflow=spec, vars={"title": "Hello, Visual World!"})
        state = rt.tick(workflow=spec, run_id=run_id)
        assert state.status is RunStatus.COMPLETED, state.error
        assert state.output == {"slug": "hello-visual-world", "said": "[new] hello-visual-world", "success": True}
