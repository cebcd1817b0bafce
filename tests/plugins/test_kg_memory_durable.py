"""KG memory is durable and chosen by configuration: facts asserted by one process are queried back by a new
process that opens a runtime on the same TOML file. And semantic queries / resolution through a real
OpenAI-compatible embeddings endpoint (a small HTTP server on 127.0.0.1 that embeds words as hashed vectors)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import List

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec

pytest.importorskip("abstractmemory")

SCRIPT = r"""
import json, sys
from abstractruntime import Effect, Runtime, StepPlan, WorkflowSpec

config, mode = sys.argv[1], sys.argv[2]
if mode == "assert":
    payload = {"assertions": [
        {"subject": "ex:ada", "predicate": "schema:name", "object": "Ada Lovelace"},
        {"subject": "ex:ada", "predicate": "rdf:type", "object": "schema:Person"}], "scope": "session"}
    effect = "memory_kg_assert"
else:
    payload = {"scope": "session", "subject": "ex:ada", "order": "asc"}
    effect = "memory_kg_query"
flow = WorkflowSpec(workflow_id="kg_" + mode, entry_node="a", nodes={
    "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect(effect, payload, "r"), next_node="b"),
    "b": lambda run, ctx: StepPlan(node_id="b", complete_output={"r": run.vars["r"]})})
with Runtime.from_config(config) as rt:
    state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow, session_id="sess-7"))
print(json.dumps({"status": state.status.value, "error": state.error, "output": state.output}))
"""


def _run(config: Path, mode: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
    env["ABSTRACTRUNTIME_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(config), mode], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kg_option, kg_file", [
    ("", "runs/kg_memory.sqlite3"),  # unset: beside the runtime's store
    ('store = "sqlite://{tmp}/kg/facts.sqlite3"', "kg/facts.sqlite3"),
    ('store = "{tmp}/kgdir"', "kgdir/kg_memory.sqlite3"),  # a directory
])
def test_facts_survive_into_a_new_process(tmp_path, kg_option, kg_file):
    config = tmp_path / "abstractruntime.toml"
    text = f'[abstractruntime]\nstore = "sqlite://{tmp_path}/runs/rt.sqlite"\n'
    if kg_option:
        text += "[abstractruntime.plugin_options.kg_memory]\n" + kg_option.format(tmp=tmp_path) + "\n"
    config.write_text(text)
    written = _run(config, "assert", tmp_path / "home")
    assert written["status"] == "completed", written["error"]
    assert written["output"]["r"]["count"] == 2
    read = _run(config, "query", tmp_path / "home")
    assert read["status"] == "completed", read["error"]
    items = read["output"]["r"]["items"]
    assert [(i["predicate"], i["object"]) for i in items] == [("schema:name", "ada lovelace"),
                                                              ("rdf:type", "schema:person")]
    assert {i["owner_id"] for i in items} == {"session_memory_sess-7"}
    assert [i["assertion_id"] for i in items] == written["output"]["r"]["assertion_ids"]
    assert (tmp_path / kg_file).is_file()
    assert not (tmp_path / "home").exists()  # nothing went to the default home


# --- semantic search through a real embeddings endpoint ---------------------------------------------------------
DIM = 64


def embed(text: str) -> List[float]:
    vec = [0.0] * DIM
    for word in "".join(c if c.isalnum() else " " for c in text.lower()).split():
        vec[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIM] += 1.0
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


class EmbeddingsHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = json.dumps({"object": "list", "model": body["model"],
                           "data": [{"object": "embedding", "index": i, "embedding": embed(t)}
                                    for i, t in enumerate(inputs)]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def embeddings_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EmbeddingsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_semantic_query_and_resolve_fallback(tmp_path, embeddings_url):
    rt = Runtime.from_config({"store": "memory://", "plugin_options": {"kg_memory": {
        "store": str(tmp_path / "kg.sqlite3"), "embedder_base_url": embeddings_url, "embedder_model": "hash-64"}}})
    facts = [{"subject": "ex:ada", "predicate": "schema:name", "object": "Ada Lovelace"},
             {"subject": "ex:ada", "predicate": "dcterms:description", "object": "wrote the first computer program"},
             {"subject": "ex:tea", "predicate": "dcterms:description", "object": "green tea is served at noon"}]
    steps = [(EffectType.MEMORY_KG_ASSERT, {"assertions": facts}),
             (EffectType.MEMORY_KG_QUERY, {"query_text": "computer program", "max_input_tokens": 300,
                                           "min_score": 0.2}),
             (EffectType.MEMORY_KG_QUERY, {"query_text": "computer program", "recall_level": "urgent",
                                           "min_score": 0.1}),
             (EffectType.MEMORY_KG_RESOLVE, {"label": "lovelace"}),
             (EffectType.MEMORY_KG_RESOLVE, {"label": "lovelace", "recall_level": "urgent"})]
    nodes = {f"s{i}": (lambda run, ctx, i=i, e=e, p=p: StepPlan(node_id=f"s{i}", effect=Effect(e, p, f"r{i}"),
                                                                 next_node=f"s{i + 1}"))
             for i, (e, p) in enumerate(steps)}
    nodes[f"s{len(steps)}"] = lambda run, ctx: StepPlan(node_id="end", complete_output={})
    flow = WorkflowSpec(workflow_id="sem", entry_node="s0", nodes=nodes)
    state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
    assert state.status is RunStatus.COMPLETED, state.error
    v = state.vars
    semantic = v["r1"]
    assert semantic["ok"] and semantic["items"][0]["object"] == "wrote the first computer program"
    scores = [i["attributes"]["_retrieval"]["score"] for i in semantic["items"]]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.2
    assert "order=similarity-desc" in semantic["active_memory_text"] and "score:" in semantic["active_memory_text"]
    assert v["r2"]["effort"]["min_score"] == 0.5  # raised to the urgent floor
    assert v["r2"]["warnings"] == ["recall_level=urgent: clamped min_score from 0.1 to 0.5"]
    resolved = v["r3"]  # no exact label: the semantic fallback finds Ada through her name
    assert [c["id"] for c in resolved["candidates"]][:1] == ["ex:ada"] and 0 < resolved["candidates"][0]["score"] < 1
    assert v["r4"]["count"] == 0  # urgent: no semantic fallback


def test_another_embedding_model_is_refused_on_the_same_store(tmp_path, embeddings_url):
    options = {"store": str(tmp_path / "kg.sqlite3"), "embedder_base_url": embeddings_url, "embedder_model": "a"}
    flow = WorkflowSpec(workflow_id="q", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect(EffectType.MEMORY_KG_ASSERT, {"assertions": [
            {"subject": "ex:x", "predicate": "schema:name", "object": "X"}]}, "r"), next_node="b"),
        "b": lambda run, ctx: StepPlan(node_id="b", complete_output={})})
    for model, status in (("a", RunStatus.COMPLETED), ("b", RunStatus.FAILED)):
        rt = Runtime.from_config({"store": "memory://",
                                  "plugin_options": {"kg_memory": dict(options, embedder_model=model)}})
        state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
        assert state.status is status, state.error
    assert "cannot open the KG store" in state.error and "embedding" in state.error
