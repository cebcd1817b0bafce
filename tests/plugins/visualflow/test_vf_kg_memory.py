"""The VisualFlow memory_kg_* nodes run against the kg_memory plugin's handlers (AbstractMemory, a SQLite file)."""

from __future__ import annotations

import pytest

from abstractruntime import RunStatus
from abstractruntime_visualflow import compile_visualflow

from vf_support import E, N, chain, flow, memory_runtime, run

pytest.importorskip("abstractmemory")


def test_kg_assert_then_query_nodes_end_to_end(tmp_path):
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("a", "memory_kg_assert", ins="exec-in assertions scope", outs="exec-out raw",
               pinDefaults={"assertions": [{"subject": "ex:Grace Hopper", "predicate": "schema:name",
                                            "object": "Grace Hopper"}], "scope": "session"}),
             N("q", "memory_kg_query", ins="exec-in subject scope", outs="exec-out raw",
               pinDefaults={"subject": "ex:grace-hopper", "scope": "session"}),
             N("e", "on_flow_end", ins="exec-in asserted found")]
    edges = chain("s", "a", "q", "e") + [E("a.raw", "e.asserted"), E("q.raw", "e.found")]
    rt = memory_runtime(settings={"plugin_options": {"kg_memory": {"store": f"sqlite://{tmp_path}/kg.sqlite3"}}})
    state = run(rt, compile_visualflow(flow("kg", nodes, edges)), session_id="vf")
    assert state.status is RunStatus.COMPLETED, state.error
    asserted, found = state.output["asserted"], state.output["found"]
    assert asserted["ok"] and asserted["count"] == 1
    assert [(i["subject"], i["object"], i["owner_id"]) for i in found["items"]] == [
        ("ex:grace-hopper", "grace hopper", "session_memory_vf")]
    assert (tmp_path / "kg.sqlite3").is_file()
