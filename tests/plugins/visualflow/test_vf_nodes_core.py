"""Core node families: triggers/terminal, human-in-the-loop, variables, literals and builtins, subflows,
data-pin evaluation rules, error-vs-raise node kinds."""

from __future__ import annotations

import sys

import pytest

from abstractruntime import RunStatus
from abstractruntime_visualflow import compile_visualflow, compile_visualflow_tree, drive, visual_to_flow
from abstractruntime_visualflow.builtins import get_builtin_handler

from vf_support import E, N, chain, flow, memory_runtime, run


# --- triggers and terminal --------------------------------------------------------------------------------------
def test_on_flow_start_declared_pins_defaults_and_no_leaks():
    nodes = [N("s", "on_flow_start", outs="exec-out a b c", pinDefaults={"b": [1]}), N("e", "on_flow_end", ins="exec-in")]
    spec = compile_visualflow(flow("f", nodes, chain("s", "e")))
    state = run(memory_runtime(), spec, {"a": 1, "_secret": 2, "zzz": 3})
    assert state.output == {"a": 1, "b": [1], "c": None, "success": True}
    assert "b" not in state.vars  # defaults are not written back
    nodes[0] = N("s", "on_flow_start", outs="exec-out")
    out = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "e"))), {"a": 1, "_x": 2}).output
    assert out == {"a": 1, "success": True}


def test_on_user_request_and_on_agent_message():
    nodes = [N("s", "on_user_request", outs="exec-out message context"), N("e", "on_flow_end", ins="exec-in")]
    out = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "e"))), {"message": "hi"}).output
    assert out == {"message": "hi", "context": {}, "success": True}
    nodes = [N("s", "on_agent_message", outs="exec-out", eventConfig={"channel": "ops"}),
             N("e", "on_flow_end", ins="exec-in")]
    out = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "e")))).output
    assert out == {"sender": "unknown", "message": "", "channel": "ops", "success": True}


def test_on_flow_end_completes_even_inside_a_loop():
    nodes = [N("s", "on_flow_start", outs="exec-out"), N("l", "loop", ins="exec-in items", outs="loop done item",
                                                         pinDefaults={"items": [1, 2, 3]}),
             N("e", "on_flow_end", ins="exec-in first")]
    edges = [E("s.exec-out", "l.exec-in"), E("l.loop", "e.exec-in"), E("l.item", "e.first")]
    assert run(memory_runtime(), compile_visualflow(flow("f", nodes, edges))).output == {"first": 1, "success": True}


# --- human in the loop --------------------------------------------------------------------------------------------
def test_ask_user_with_choices_and_answer_user_levels():
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("a", "ask_user", ins="exec-in prompt choices", outs="exec-out response",
               pinDefaults={"choices": ["red", "blue"]}, effectConfig={"allowFreeText": False}),
             N("say", "answer_user", ins="exec-in message level", outs="exec-out", pinDefaults={"level": "warn"}),
             N("e", "on_flow_end", ins="exec-in picked extra")]
    edges = chain("s", "a", "say", "e") + [E("a.response", "say.message"), E("a.response", "e.picked"),
                                           E("a.extra", "e.extra")]
    rt = memory_runtime()
    spec = compile_visualflow(flow("f", nodes, edges))
    state = run(rt, spec)
    w = state.waiting
    assert (w.prompt, w.choices, w.allow_free_text) == ("Please respond:", ["red", "blue"], False)
    state = rt.resume(workflow=spec, run_id=state.run_id, wait_key=w.wait_key, payload={"response": "red", "extra": 1})
    assert state.output == {"picked": "red", "extra": 1, "success": True}
    said = [r["result"] for r in rt.get_ledger(state.run_id)
            if (r.get("effect") or {}).get("type") == "answer_user" and r["status"] == "completed"]
    assert said == [{"message": "red", "level": "warning"}]


def test_an_effect_node_at_the_end_completes_the_run_with_its_result():
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("say", "answer_user", ins="exec-in message", outs="exec-out", pinDefaults={"message": "bye"})]
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "say"))))
    assert state.output == {"success": True, "result": {"message": "bye", "level": "message"}}


# --- variables --------------------------------------------------------------------------------------------------
def test_set_var_dotted_paths_zero_values_and_reserved_names():
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("a", "set_var", ins="exec-in name value", outs="exec-out", pinDefaults={"name": "cfg.deep.x", "value": 5}),
             N("b", "set_var", ins="exec-in name value/number", outs="exec-out", pinDefaults={"name": "zero"}),
             N("e", "on_flow_end", ins="exec-in")]
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "a", "b", "e"))))
    assert state.vars["cfg"] == {"deep": {"x": 5}} and state.vars["zero"] == 0
    nodes[1]["data"]["pinDefaults"]["name"] = "_internal"
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "a", "b", "e"))))
    assert state.output["success"] is False and state.output["node"] == "a" and "reserved" in state.output["error"]


def test_set_var_property_and_set_vars():
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("p", "set_var_property", ins="exec-in name key value", outs="exec-out",
               pinDefaults={"name": "user", "key": "address.city", "value": "Paris"}),
             N("m", "set_vars", ins="exec-in updates", outs="exec-out", pinDefaults={"updates": '{"a": 1, "b.c": 2}'}),
             N("e", "on_flow_end", ins="exec-in")]
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "p", "m", "e"))),
                {"user": {"name": "Ada"}})
    assert state.vars["user"] == {"name": "Ada", "address": {"city": "Paris"}}
    assert state.vars["a"] == 1 and state.vars["b"] == {"c": 2}
    nodes[2]["data"]["pinDefaults"] = {"updates": {"ok": 1, "_bad": 2}}
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "p", "m", "e"))))
    assert state.output["success"] is False and "ok" not in state.vars  # nothing applied


def test_var_decl_bool_var_get_context():
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("d1", "var_decl", literalValue={"name": "n", "type": "number", "default": 7}),
             N("d2", "var_decl", literalValue={"name": "t", "type": "boolean"}),
             N("b", "bool_var", literalValue={"name": "flag", "default": True}),
             N("c", "get_context"),
             N("e", "on_flow_end", ins="exec-in n t flag task msgs")]
    edges = chain("s", "e") + [E("d1.value", "e.n"), E("d2.value", "e.t"), E("b.value", "e.flag"),
                               E("c.task", "e.task"), E("c.messages", "e.msgs")]
    spec = compile_visualflow(flow("f", nodes, edges))
    out = run(memory_runtime(), spec, {"n": True, "t": "x", "context": {"task": 42, "messages": None}}).output
    assert out == {"n": 7, "t": False, "flag": True, "task": "42", "msgs": [], "success": True}


def test_add_message_as_an_execution_node_appends_to_the_context():
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("m", "add_message", ins="exec-in role content", outs="exec-out message",
               pinDefaults={"role": "assistant", "content": "hello"}),
             N("e", "on_flow_end", ins="exec-in")]
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "m", "e"))))
    msgs = state.vars["context"]["messages"]
    assert [(m["role"], m["content"]) for m in msgs] == [("assistant", "hello")]
    assert msgs[0]["metadata"]["message_id"].startswith("msg_")


# --- data-pin evaluation -------------------------------------------------------------------------------------------
def test_previous_output_leaks_into_the_next_input_and_beats_pin_defaults():
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("o", "make_object", ins="exec-in", outs="exec-out", pinDefaults={"x": "from-default"}),
             N("e", "on_flow_end", ins="exec-in")]
    out = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "o", "e"))), {"x": "leaked"}).output
    assert out == {"x": "leaked", "success": True}


def test_connected_pin_wins_even_when_null_and_literals():
    nodes = [N("s", "on_flow_start", outs="exec-out v"), N("lit", "literal_json", literalValue={"k": [1]}),
             N("e", "on_flow_end", ins="exec-in v lit", pinDefaults={"v": "default"})]
    edges = chain("s", "e") + [E("s.v", "e.v"), E("lit.value", "e.lit")]
    out = run(memory_runtime(), compile_visualflow(flow("f", nodes, edges))).output
    assert out == {"v": None, "lit": {"k": [1]}, "success": True}


def test_input_key_and_output_key():
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("o", "make_object", ins="exec-in", outs="exec-out", inputKey="payload", outputKey="saved.copy"),
             N("a", "ask_user", ins="exec-in prompt", outs="exec-out response", outputKey="answers.name",
               pinDefaults={"prompt": "?"}),
             N("e", "on_flow_end", ins="exec-in")]
    rt = memory_runtime()
    spec = compile_visualflow(flow("f", nodes, chain("s", "o", "a", "e")))
    state = run(rt, spec, {"payload": {"k": 1}})
    assert state.vars["saved"] == {"copy": {"k": 1}}
    state = rt.resume(workflow=spec, run_id=state.run_id, wait_key=state.waiting.wait_key, payload={"response": "Ada"})
    assert state.vars["answers"] == {"name": "Ada"}


def test_function_node_errors_complete_the_run_effect_node_errors_fail_it():
    nodes = [N("s", "on_flow_start", outs="exec-out"), N("d", "divide", ins="exec-in a b", outs="exec-out",
                                                         pinDefaults={"a": 1, "b": 0}),
             N("e", "on_flow_end", ins="exec-in")]
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "d", "e"))))
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"success": False, "error": "Division by zero", "node": "d"}
    assert state.vars["_flow_error"] == "Division by zero" and state.vars["_flow_error_node"] == "d"
    nodes = [N("s", "on_flow_start", outs="exec-out"), N("x", "emit_event", ins="exec-in", outs="exec-out"),
             N("e", "on_flow_end", ins="exec-in")]
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "x", "e"))))
    assert state.status is RunStatus.FAILED and "requires an event name" in state.error


def test_branch_node_without_a_branch_output_completes_with_an_error():
    nodes = [N("s", "on_flow_start", outs="exec-out"), N("o", "make_object", ins="exec-in", outs="true false"),
             N("e", "on_flow_end", ins="exec-in")]
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "o") + [E("o.true", "e.exec-in")])))
    assert state.output["success"] is False and "branch" in state.output["error"]


# --- literals and builtins -------------------------------------------------------------------------------------
@pytest.mark.parametrize("node_type,inputs,expected", [
    ("add", {"a": 1, "b": "2"}, 3.0), ("subtract", {"a": 5}, 5.0), ("multiply", {"a": 2, "b": 3}, 6.0),
    ("modulo", {"a": 7, "b": 4}, 3.0), ("power", {"base": 2, "exp": 10}, 1024.0), ("abs", {"value": -2}, 2.0),
    ("round", {"value": 2.345, "decimals": 2}, 2.35), ("concat", {"b": "y", "a": "x", "z2": "w"}, "x y w"),
    ("split", {"text": "a, b,,c"}, ["a", "b", "c"]), ("join", {"items": [1, "b"], "delimiter": "-"}, "1-b"),
    ("format", {"template": "{x}!", "values": {"x": 1}}, "1!"),
    ("string_template", {"template": "{{ u.name | upper }}: {{ tags | join(\"/\") }}", "u": {"name": "ada"},
                         "tags": ["a", "b"]}, "ADA: a/b"),
    ("substring", {"text": "abcdef", "start": 1, "end": 3}, "bc"), ("contains", {"text": "abc", "pattern": ""}, False),
    ("replace", {"text": "aaa", "pattern": "a", "replacement": "b", "mode": "first"}, "baa"),
    ("compare", {"a": 1, "b": "x", "op": "<"}, False), ("compare", {"a": 2, "b": 1, "op": ">="}, True),
    ("not", {"value": 0}, True), ("and", {"a": 1, "b": 0}, False), ("or", {"a": 0, "b": 1}, True),
    ("coalesce", {"a": None, "b": 2}, 2), ("get", {"object": {"a": [{"b": 1}]}, "key": "a[0].b"}, {"value": 1}),
    ("set", {"object": {"a": 1}, "key": "b.c", "value": 2}, {"a": 1, "b": {"c": 2}}),
    ("merge", {"a": {"x": 1}, "b": {"y": 2}}, {"x": 1, "y": 2}), ("make_array", {"a": 1, "b": None}, [1]),
    ("array_concat", {"a": [1], "b": 2}, [1, 2]),
    ("get_element", {"array": [1, 2], "index": -1}, {"result": 2, "found": True}),
    ("get_element", {"array": [1], "index": 5, "default": 0}, {"result": 0, "found": False}),
    ("array_map", {"items": [{"k": 1}, {"k": 2}], "key": "k"}, [1, 2]),
    ("array_filter", {"items": [{"k": 1}, {"k": 2}], "key": "k", "value": 2}, [{"k": 2}]),
    ("array_length", {"array": [1, 2]}, 2), ("array_dedup", {"array": [1, 1, 2]}, [1, 2]),
    ("parse_json", {"text": "```json\n{\"a\": 1}\n```"}, {"a": 1}), ("parse_json", {"text": "3"}, {"value": 3}),
    ("stringify_json", {"value": {"b": 1, "a": 2}, "mode": "minified", "sort_keys": True}, '{"a":2,"b":1}'),
    # the rendering library's function (integration-surface §7.1): fenced JSON parsed, unknown mode = beautify,
    # legacy indent without a mode
    ("stringify_json", {"value": '```json\n{"b":1,"a":[1,2]}\n```', "mode": "minified", "sort_keys": True},
     '{"a":[1,2],"b":1}'),
    ("stringify_json", {"value": {"a": 1}, "mode": "fancy"}, '{\n  "a": 1\n}'),
    ("stringify_json", {"value": {"a": 1}, "indent": 4}, '{\n    "a": 1\n}'),
    ("stringify_json", {"value": "hello"}, '"hello"'),
    ("agent_trace_report", {"scratchpad": None}, "# Agent Trace Report\n\n_No scratchpad provided._\n"),
    ("agent_trace_report", {"scratchpad": {"x": 1}}, "# Agent Trace Report\n\n_No node_traces found in scratchpad._\n"),
])
def test_builtins(node_type, inputs, expected):
    assert get_builtin_handler(node_type)(inputs) == expected


def test_builtins_errors():
    with pytest.raises(ValueError):
        get_builtin_handler("divide")({"a": 1, "b": 0})
    with pytest.raises(ValueError):
        get_builtin_handler("compare")({"op": "~"})
    with pytest.raises(ValueError):
        get_builtin_handler("parse_json")({"text": ""})
    r = get_builtin_handler("random_int")({"min": 5, "max": 1})
    assert 1 <= r <= 5


def test_concat_uses_declared_pin_order_and_separator():
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("c", "concat", ins="z a", concatConfig={"separator": "\\n"}, pinDefaults={"z": "first", "a": "second"}),
             N("e", "on_flow_end", ins="exec-in t")]
    out = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "e") + [E("c.result", "e.t")]))).output
    assert out["t"] == "first\nsecond"


def test_code_nodes_refuse_to_run_without_a_sandbox(monkeypatch):
    monkeypatch.delenv("ABSTRACTRUNTIME_VISUALFLOW_UNSANDBOXED_CODE", raising=False)
    monkeypatch.setitem(sys.modules, "RestrictedPython", None)  # as if it were not installed
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("c", "code", ins="exec-in", outs="exec-out", code="def transform(input):\n    return {'n': len(input)}"),
             N("e", "on_flow_end", ins="exec-in")]
    spec = compile_visualflow(flow("f", nodes, chain("s", "c", "e")))
    state = run(memory_runtime(), spec, {"a": 1})
    assert state.output["success"] is False and "sandbox" in state.output["error"]
    monkeypatch.setenv("ABSTRACTRUNTIME_VISUALFLOW_UNSANDBOXED_CODE", "1")  # explicit opt-in for trusted flows
    state = run(memory_runtime(), spec, {"a": 1})
    assert state.output == {"n": 1, "success": True}


# --- subflows ---------------------------------------------------------------------------------------------------
def _child(flow_id="child"):
    return flow(flow_id, [N("s", "on_flow_start", outs="exec-out"), N("e", "on_flow_end", ins="exec-in")],
                chain("s", "e"))


def test_subflow_inherit_context_merge_order_and_session():
    parent_ctx = {"messages": [{"role": "system", "content": "P-sys", "metadata": {"message_id": "ps"}},
                               {"role": "user", "content": "P-1", "metadata": {"message_id": "shared"}},
                               {"role": "user", "content": "no-id"}],
                  "attachments": [{"$artifact": "a1"}]}
    child_ctx = {"messages": [{"role": "user", "content": "C-1", "metadata": {"message_id": "shared"}},
                              {"role": "system", "content": "C-sys"}]}
    main = flow("main", [N("s", "on_flow_start", outs="exec-out"),
                         N("c", "subflow", ins="exec-in vars session_id", outs="exec-out output", subflowId="child",
                           effectConfig={"inherit_context": True},
                           pinDefaults={"vars": {"context": child_ctx, "k": 1}, "session_id": "S-1"}),
                         N("e", "on_flow_end", ins="exec-in")], chain("s", "c", "e"))
    pending = visual_to_flow(main).nodes["c"].handler({}, vars={"context": parent_ctx})["_pending_effect"]
    assert "inherit_context" not in pending and pending["session_id"] == "S-1"
    assert pending["vars"]["k"] == 1
    ctx = pending["vars"]["context"]
    assert [m["content"] for m in ctx["messages"]] == ["C-sys", "P-sys", "P-1", "no-id"]
    assert ctx["attachments"] == [{"$artifact": "a1"}]


def test_subflow_output_mapping_and_a_failing_child():
    child = flow("child", [N("s", "on_flow_start", outs="exec-out"),
                           N("d", "divide", ins="exec-in a b", outs="exec-out", pinDefaults={"a": 1, "b": 2}),
                           N("e", "on_flow_end", ins="exec-in result")],
                 chain("s", "d", "e") + [E("d.result", "e.result")])
    main = flow("main", [N("s", "on_flow_start", outs="exec-out"),
                         N("c", "subflow", ins="exec-in", outs="exec-out half", subflowId="child"),
                         N("e", "on_flow_end", ins="exec-in half out sub")],
                chain("s", "c", "e") + [E("c.half", "e.half"), E("c.output", "e.out"), E("c.child_output", "e.sub")])
    rt = memory_runtime()
    for spec in compile_visualflow_tree(root_id="main", flows_by_id={"main": main, "child": child}).values():
        rt.workflow_registry.register(spec)
    run_id = rt.start(workflow=rt.workflow_registry.get("main"))
    out = drive(rt, run_id).output
    # the child's output has `result`, so `output` is that value; a single declared pin takes it
    assert out == {"half": 0.5, "out": 0.5, "sub": {"result": 0.5, "success": True}, "success": True}


def test_compile_visualflow_tree_follows_references_and_skips_missing_ids():
    main = flow("main", [N("s", "on_flow_start", outs="exec-out"),
                         N("c", "subflow", ins="exec-in", outs="exec-out", subflowId="child"),
                         N("d", "subflow", ins="exec-in", outs="exec-out", flowId="missing"),
                         N("e", "on_flow_end", ins="exec-in")], chain("s", "c", "d", "e"))
    rec = flow("child", [N("s", "on_flow_start", outs="exec-out"),
                         N("again", "subflow", ins="exec-in", outs="exec-out", subflowId="main")], chain("s", "again"))
    specs = compile_visualflow_tree(root_id="", flows_by_id={"main": main, "child": rec, "unused": _child("unused")})
    assert set(specs) == {"main", "child"}
    assert compile_visualflow_tree(root_id="x", flows_by_id={}) == {}
    with pytest.raises(ValueError):
        compile_visualflow_tree(root_id="main", flows_by_id={"main": main, "bad": {"nodes": []}})
