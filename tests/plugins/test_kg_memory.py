"""The ``kg_memory`` plugin and ``abstractruntime.integrations.abstractmemory``: MEMORY_KG_ASSERT / QUERY / RESOLVE
over real AbstractMemory stores (a SQLite file in a tmp dir; the in-memory store where the warning is the point),
as VAM §3.9 and integration-surface §1.14 / §6.8 specify."""

from __future__ import annotations

import inspect
import sys
from typing import Any, Dict, List, Tuple

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunState, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.errors import ConfigurationError

abstractmemory = pytest.importorskip("abstractmemory")

FIXED_NOW = "2025-01-02T03:04:05+00:00"


def steps_flow(steps: List[Tuple[Any, Dict[str, Any]]], workflow_id: str = "kg") -> WorkflowSpec:
    nodes = {}
    for i, (etype, payload) in enumerate(steps):
        def node(run, ctx, i=i, etype=etype, payload=payload):
            return StepPlan(node_id=f"s{i}", effect=Effect(etype, payload, f"r{i}"), next_node=f"s{i + 1}")
        nodes[f"s{i}"] = node
    nodes[f"s{len(steps)}"] = lambda run, ctx: StepPlan(node_id="end", complete_output={"ok": True})
    return WorkflowSpec(workflow_id=workflow_id, entry_node="s0", nodes=nodes)


def run_steps(rt: Runtime, steps, **start) -> RunState:
    flow = steps_flow(steps)
    return rt.tick(workflow=flow, run_id=rt.start(workflow=flow, **start))


@pytest.fixture
def rt(tmp_path):
    runtime = Runtime.from_config({"store": f"sqlite://{tmp_path}/rt.sqlite",
                                   "plugin_options": {"kg_memory": {"store": f"sqlite://{tmp_path}/kg.sqlite3"}}})
    yield runtime
    runtime.close()


def ok(state: RunState) -> Dict[str, Any]:
    assert state.status is RunStatus.COMPLETED, state.error
    return state.vars


ALICE = [{"subject": "ex:Alice Smith", "predicate": "schema:name", "object": "Alice Smith"},
         {"subject": "ex:AliceSmith", "predicate": "rdf:type", "object": "schema:Person"},
         {"subject": "ex:alice_smith", "predicate": "schema:description", "object": "Likes green tea"}]


# --- surface (integration-surface §1.14) -----------------------------------------------------------------------
def test_the_reference_module_and_its_signatures():
    import abstractruntime.integrations.abstractmemory as mod
    from abstractruntime.integrations.abstractmemory import effect_handlers

    assert mod.__all__ == ["build_memory_kg_effect_handlers", "resolve_scope_owner_id"]
    P = inspect.Parameter
    build = inspect.signature(mod.build_memory_kg_effect_handlers).parameters
    assert [(n, p.kind, p.default) for n, p in build.items()] == [
        ("store", P.KEYWORD_ONLY, P.empty), ("run_store", P.KEYWORD_ONLY, P.empty),
        ("now_iso", P.KEYWORD_ONLY, P.empty)]
    owner = inspect.signature(mod.resolve_scope_owner_id).parameters
    assert [(n, p.kind, p.default) for n, p in owner.items()] == [
        ("run", P.POSITIONAL_OR_KEYWORD, P.empty), ("scope", P.KEYWORD_ONLY, P.empty),
        ("run_store", P.KEYWORD_ONLY, P.empty)]
    assert effect_handlers.build_memory_kg_effect_handlers is mod.build_memory_kg_effect_handlers


def test_the_plugin_provides_the_three_effects(rt):
    providers = rt.effect_handler_types()
    assert {providers[t] for t in ("memory_kg_assert", "memory_kg_query", "memory_kg_resolve")} == {"kg_memory"}


# --- scope owners ----------------------------------------------------------------------------------------------
def test_scope_owners(rt, monkeypatch):
    from abstractruntime.integrations.abstractmemory import resolve_scope_owner_id

    parent = RunState.new(workflow_id="w", entry_node="a")
    rt.run_store.save(parent)
    child = RunState.new(workflow_id="w", entry_node="a", parent_run_id=parent.run_id)
    owner = lambda run, scope: resolve_scope_owner_id(run, scope=scope, run_store=rt.run_store)  # noqa: E731
    assert owner(child, "run") == child.run_id
    assert owner(child, "session") == parent.run_id  # no session id: the root of the parent chain
    assert owner(RunState.new(workflow_id="w", entry_node="a", session_id="s-1_x"), "session") == "session_memory_s-1_x"
    sha = owner(RunState.new(workflow_id="w", entry_node="a", session_id="a b/c"), "SESSION")
    assert sha.startswith("session_memory_sha_") and len(sha) == len("session_memory_sha_") + 32
    monkeypatch.delenv("ABSTRACTRUNTIME_GLOBAL_MEMORY_RUN_ID", raising=False)
    assert owner(child, "global") == "global_memory"
    monkeypatch.setenv("ABSTRACTRUNTIME_GLOBAL_MEMORY_RUN_ID", "team_mem")
    assert owner(child, "global") == "team_mem"
    monkeypatch.setenv("ABSTRACTRUNTIME_GLOBAL_MEMORY_RUN_ID", "../etc")
    assert owner(child, "global") == "global_memory"
    with pytest.raises(ValueError, match="Unknown memory scope: team"):
        owner(child, "team")


# --- MEMORY_KG_ASSERT ------------------------------------------------------------------------------------------
def test_assert_normalises_slugs_defaults_and_dedupes(rt):
    state = run_steps(rt, [
        (EffectType.MEMORY_KG_ASSERT, {"assertions": ALICE, "scope": "session", "span_id": "span_1",
                                       "attributes_defaults": {"source": "chat"}}),
        (EffectType.MEMORY_KG_ASSERT, {"triples": ALICE[:1] + [{"subject": "ex:Bob", "predicate": "schema:name",
                                                                  "object": "Bob"}], "scope": "session"}),
        (EffectType.MEMORY_KG_QUERY, {"scope": "session", "subject": "ex:Alice Smith", "order": "asc"}),
    ], session_id="sess")
    r0, r1, r2 = (ok(state)[k] for k in ("r0", "r1", "r2"))
    assert r0["ok"] and r0["count"] == 3 and r0["count_attempted"] == 3 and r0["skipped_duplicates"] == 0
    assert "warnings" not in r0  # a durable store
    assert r1["count"] == 1 and r1["skipped_duplicates"] == 1 and r1["count_attempted"] == 2
    items = r2["items"]
    assert [(i["subject"], i["predicate"], i["object"]) for i in items] == [
        ("ex:alice-smith", "schema:name", "alice smith"), ("ex:alice-smith", "rdf:type", "schema:person"),
        ("ex:alice-smith", "dcterms:description", "likes green tea")]  # alias mapped, ex: terms slugged
    first = items[0]
    assert first["scope"] == "session" and first["owner_id"] == "session_memory_sess"
    assert first["provenance"] == {"span_id": "span_1", "writer_run_id": state.run_id, "writer_workflow_id": "kg"}
    assert first["attributes"] == {"source": "chat"}
    assert r0["assertion_ids"] == [i["assertion_id"] for i in items]


def test_assert_without_dedupe_writes_again(rt):
    state = run_steps(rt, [(EffectType.MEMORY_KG_ASSERT, {"assertions": ALICE[:1]}),
                           (EffectType.MEMORY_KG_ASSERT, {"assertions": ALICE[:1], "dedupe": False}),
                           (EffectType.MEMORY_KG_QUERY, {})])
    assert ok(state)["r1"]["count"] == 1 and ok(state)["r2"]["count"] == 2


def test_assert_contract_errors_write_nothing(rt):
    state = run_steps(rt, [(EffectType.MEMORY_KG_ASSERT, {"scope": "run"})])
    assert state.status is RunStatus.FAILED
    assert "MEMORY_KG_ASSERT requires payload.assertions (list[object])" in state.error
    empty = ok(run_steps(rt, [(EffectType.MEMORY_KG_ASSERT, {"assertions": []})]))["r0"]
    assert empty == {"ok": True, "count": 0, "assertion_ids": [], "skipped": True}
    bad = ALICE[:1] + [{"subject": "ex:a", "predicate": "ex:likes", "object": "ex:b"},
                       {"subject": "ex:a", "predicate": "foaf:knows", "object": "ex:b"}]
    state = run_steps(rt, [(EffectType.MEMORY_KG_ASSERT, {"assertions": bad})])
    assert state.status is RunStatus.FAILED and "Unknown KG predicate(s): ex:likes, foaf:knows" in state.error
    state = run_steps(rt, [(EffectType.MEMORY_KG_ASSERT, {"assertions": ALICE[:1] + ["not an object"]})])
    assert state.status is RunStatus.FAILED and "assertions[1] must be an object" in state.error
    state = run_steps(rt, [(EffectType.MEMORY_KG_QUERY, {"scope": "all"})])
    assert ok(state)["r0"]["count"] == 0  # none of the refused batches left a row
    custom = ok(run_steps(rt, [(EffectType.MEMORY_KG_ASSERT, {"assertions": bad[1:2],
                                                              "allow_custom_predicates": True})]))["r0"]
    assert custom["count"] == 1


def test_a_re_run_of_the_same_step_writes_nothing_twice(rt):
    """A crash between the store write and the step's commit re-runs the step under the same idempotency key."""
    run = RunState.new(workflow_id="kg", entry_node="a")
    effect = Effect(EffectType.MEMORY_KG_ASSERT, {"assertions": ALICE, "dedupe": False})
    first = rt.execute_effect(run, effect, node_id="a", idempotency_key="k1")
    again = rt.execute_effect(run, effect, node_id="a", idempotency_key="k1")
    assert first.result["assertion_ids"] == again.result["assertion_ids"] and again.result["count"] == 3
    query = rt.execute_effect(run, Effect(EffectType.MEMORY_KG_QUERY, {}), node_id="q", idempotency_key="k2")
    assert query.result["count"] == 3


# --- MEMORY_KG_QUERY -------------------------------------------------------------------------------------------
def test_query_scopes_order_limit_and_packing(rt):
    state = run_steps(rt, [
        (EffectType.MEMORY_KG_ASSERT, {"assertions": ALICE[:1], "scope": "run"}),
        (EffectType.MEMORY_KG_ASSERT, {"assertions": ALICE[1:2], "scope": "session"}),
        (EffectType.MEMORY_KG_ASSERT, {"assertions": ALICE[2:], "scope": "global"}),
        (EffectType.MEMORY_KG_QUERY, {"scope": "all"}),
        (EffectType.MEMORY_KG_QUERY, {"scope": "all", "order": "asc", "limit": 2}),
        (EffectType.MEMORY_KG_QUERY, {"scope": "team"}),
        (EffectType.MEMORY_KG_QUERY, {"scope": "all", "max_input_tokens": 400, "model": "gpt-4o"}),
        (EffectType.MEMORY_KG_QUERY, {"scope": "all", "recall_level": "urgent", "limit": 500}),
        (EffectType.MEMORY_KG_QUERY, {"predicate": "schema:description", "scope": "global"}),
    ], session_id="s")
    v = ok(state)
    assert [i["scope"] for i in v["r3"]["items"]] == ["global", "session", "run"]  # newest first
    assert [i["scope"] for i in v["r4"]["items"]] == ["run", "session"] and v["r4"]["count"] == 2
    assert v["r5"] == {"ok": False, "count": 0, "items": [], "error": "Unknown memory scope: team"}
    assert "active_memory_text" not in v["r3"]  # no budget, no packing
    packed = v["r6"]
    assert packed["packets_version"] == 0 and packed["packed_count"] == 3 and packed["dropped"] == 0
    text = packed["active_memory_text"]
    assert text.startswith("## KG ACTIVE MEMORY\n(scope=all; order=observed_at-desc; budget=400 max_input_tokens)")
    assert "ex:alice-smith —dcterms:description→ likes green tea" in text and packed["estimated_tokens"] > 0
    urgent = v["r7"]
    assert urgent["effort"] == {"recall_level": "urgent", "limit": 40, "min_score": None, "max_input_tokens": 600}
    assert urgent["warnings"] == ["recall_level=urgent: clamped limit from 500 to 40"]
    assert urgent["packed_count"] == 3  # the level's token budget packs by default
    assert [i["predicate"] for i in v["r8"]["items"]] == ["dcterms:description"]  # the alias is mapped in queries


def test_query_with_an_unknown_recall_level_fails(rt):
    state = run_steps(rt, [(EffectType.MEMORY_KG_QUERY, {"recall_level": "instant"})])
    assert state.status is RunStatus.FAILED and "Unknown recall_level: instant" in state.error


def test_semantic_query_without_an_embedder_reports_the_error(rt):
    v = ok(run_steps(rt, [(EffectType.MEMORY_KG_QUERY, {"query_text": "tea"})]))
    assert v["r0"]["ok"] is False and v["r0"]["items"] == [] and "embedder" in v["r0"]["error"]


# --- MEMORY_KG_RESOLVE -----------------------------------------------------------------------------------------
def test_resolve_exact_labels_types_and_errors(rt):
    v = ok(run_steps(rt, [
        (EffectType.MEMORY_KG_ASSERT, {"assertions": ALICE + [
            {"subject": "ex:acme", "predicate": "skos:altLabel", "object": "Alice Smith"},
            {"subject": "person:7", "predicate": "schema:name", "object": "Alice Smith"}]}),
        (EffectType.MEMORY_KG_RESOLVE, {"label": "  alice   SMITH "}),
        (EffectType.MEMORY_KG_RESOLVE, {"query": "Alice Smith", "expected_type": "schema:Person"}),
        (EffectType.MEMORY_KG_RESOLVE, {"label": " "}),
        (EffectType.MEMORY_KG_RESOLVE, {"label": "Alice Smith", "max_candidates": 1}),
    ]))
    both = v["r1"]
    assert both["ok"] and [c["id"] for c in both["candidates"]] == ["ex:acme", "ex:alice-smith"]  # only ex: ids
    alice = both["candidates"][1]
    assert alice["types"] == ["schema:person"] and alice["score"] == 1.0 and alice["label"] == "alice smith"
    assert alice["evidence"][0]["predicate"] == "schema:name"
    assert both["raw"] == {"label": "alice   SMITH", "expected_type": None}
    assert [c["id"] for c in v["r2"]["candidates"]] == ["ex:alice-smith"]
    assert v["r3"] == {"ok": False, "count": 0, "candidates": [], "error": "label is required"}
    assert v["r4"]["count"] == 1


# --- stores, configuration, host API ---------------------------------------------------------------------------
def test_an_in_memory_store_warns_on_assert_and_query_only(tmp_path):
    rt = Runtime.from_config({"store": "memory://", "plugin_options": {"kg_memory": {"store": "memory://"}}})
    v = ok(run_steps(rt, [(EffectType.MEMORY_KG_ASSERT, {"assertions": ALICE[:1]}),
                          (EffectType.MEMORY_KG_QUERY, {}),
                          (EffectType.MEMORY_KG_RESOLVE, {"label": "Alice Smith"})]))
    assert "InMemoryTripleStore" in v["r0"]["warnings"][0] and "InMemoryTripleStore" in v["r1"]["warnings"][0]
    assert "warnings" not in v["r2"] and v["r2"]["count"] == 1


def test_the_default_store_sits_beside_the_runtime_store(tmp_path):
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"})
    ok(run_steps(rt, [(EffectType.MEMORY_KG_ASSERT, {"assertions": ALICE[:1]})]))
    assert (tmp_path / "db" / "kg_memory.sqlite3").is_file()
    rt.close()


@pytest.mark.parametrize("options, message", [
    ({"stor": "x"}, "Unknown option(s) 'stor' in plugin_options.kg_memory"),
    ({"store": "postgres://db/kg"}, "is not a KG store"),
    ({"embedder_model": "m"}, "embedder_base_url and embedder_model go together"),
])
def test_bad_options_refuse_the_runtime(options, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Runtime.from_config({"store": "memory://", "plugin_options": {"kg_memory": options}})


def test_host_handlers_over_a_host_store(tmp_path):
    from abstractmemory import InMemoryTripleStore, SQLiteTripleStore

    from abstractruntime.integrations.abstractmemory import build_memory_kg_effect_handlers
    from abstractruntime_inmemory.store import MemoryBackend

    with pytest.raises(TypeError, match="must have callable add"):
        build_memory_kg_effect_handlers(store=object(), run_store=None, now_iso=lambda: FIXED_NOW)
    store = SQLiteTripleStore(tmp_path / "host.sqlite3")
    handlers = build_memory_kg_effect_handlers(store=store, run_store=None, now_iso=lambda: FIXED_NOW)
    assert set(handlers) == {EffectType.MEMORY_KG_ASSERT, EffectType.MEMORY_KG_QUERY, EffectType.MEMORY_KG_RESOLVE}
    b = MemoryBackend()
    rt = Runtime(run_store=b.run_store, ledger_store=b.ledger_store, effect_handlers=handlers)
    assert rt.effect_handler_types()["memory_kg_assert"] == "host"
    v = ok(run_steps(rt, [(EffectType.MEMORY_KG_ASSERT, {"assertions": ALICE[:1]}),
                          (EffectType.MEMORY_KG_QUERY, {})]))
    assert v["r1"]["items"][0]["observed_at"] == FIXED_NOW
    assert [a.subject for a in store.query(abstractmemory.TripleQuery(limit=0))] == ["ex:alice-smith"]
    memory_handlers = build_memory_kg_effect_handlers(store=InMemoryTripleStore(), run_store=None,
                                                      now_iso=lambda: FIXED_NOW)
    rt2 = Runtime(run_store=b.run_store, ledger_store=b.ledger_store, effect_handlers=memory_handlers)
    assert "InMemoryTripleStore" in ok(run_steps(rt2, [(EffectType.MEMORY_KG_QUERY, {})]))["r0"]["warnings"][0]


def test_without_abstractmemory_the_errors_say_what_to_install(monkeypatch, tmp_path):
    from abstractruntime.integrations.abstractmemory import build_memory_kg_effect_handlers

    monkeypatch.setitem(sys.modules, "abstractmemory", None)  # `import abstractmemory` now raises ImportError
    with pytest.raises(RuntimeError, match=r"needs the 'abstractmemory' package.*pip install 'abstractruntime\[kg\]'"):
        build_memory_kg_effect_handlers(store=object(), run_store=None, now_iso=lambda: FIXED_NOW)
    rt = Runtime.from_config({"store": "memory://", "plugin_options": {"kg_memory": {"store": str(tmp_path)}}})
    state = run_steps(rt, [(EffectType.MEMORY_KG_QUERY, {})])
    assert state.status is RunStatus.FAILED and "needs the 'abstractmemory' package" in state.error
    assert not (tmp_path / "kg_memory.sqlite3").exists()
