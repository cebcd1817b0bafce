"""``abstractruntime.rendering`` (integration-surface spec §7): ``stringify_json`` and the agent trace report, at the
0.4.2 paths. The trace report is also checked on the node traces of a real run (its ledger-derived traces)."""

from __future__ import annotations

from typing import Any, Dict

from abstractruntime import Effect, EffectOutcome, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.rendering import JsonStringifyMode, render_agent_trace_markdown, stringify_json
from abstractruntime.rendering.agent_trace_report import AgentTraceMarkdownReportConfig
from abstractruntime_inmemory.store import MemoryBackend


# --- §7.1 stringify_json ---------------------------------------------------------------------------------------------
def test_spec_examples():
    assert stringify_json('```json\n{"b":1,"a":[1,2]}\n```', mode="minified", sort_keys=True) == '{"a":[1,2],"b":1}'
    assert stringify_json("hello") == '"hello"'
    assert stringify_json({"k": (1, 2)}, mode="none") == '{"k": [1, 2]}'


def test_modes():
    value = {"b": 1, "a": ["é", None]}
    assert stringify_json(value) == '{\n  "b": 1,\n  "a": [\n    "é",\n    null\n  ]\n}'
    assert stringify_json(value, mode=" MINIFIED ") == '{"b":1,"a":["é",null]}'
    assert stringify_json(value, mode=JsonStringifyMode.NONE, sort_keys=True) == '{"a": ["é", null], "b": 1}'
    assert stringify_json(value, mode="pretty") == stringify_json(value)  # unknown mode: beautify
    assert stringify_json([1], beautify_indent=4) == "[\n    1\n]"
    assert stringify_json([1], beautify_indent=-1) == stringify_json([1], beautify_indent="x") == "[\n  1\n]"


def test_strings_are_parsed():
    assert stringify_json('Here it is: {"a": 1} and more {"b": 2}', mode="minified") == '{"a":1}'
    assert stringify_json("noise [1, 2] tail", mode="minified") == "[1,2]"
    assert stringify_json("{'x': (1, 2), 3: None}", mode="minified") == '{"x":[1,2],"3":null}'  # Python literal
    assert stringify_json("42", mode="minified") == "42"
    assert stringify_json('{"a": 1}', parse_strings=False) == '"{\\"a\\": 1}"'
    assert stringify_json("   ", mode="minified") == '"   "'
    assert stringify_json("[broken", mode="minified") == '"[broken"'
    # beyond the first 64 candidate positions nothing is tried
    assert stringify_json("[" * 64 + ' {"late": 1}', mode="minified").startswith('"[[[')


def test_unknown_objects_become_strings():
    class Thing:
        def __str__(self) -> str:
            return "thing!"

    assert stringify_json({1: Thing(), "s": {1, 2} and Thing()}, mode="minified") == '{"1":"thing!","s":"thing!"}'


# --- §7.2 agent trace report -----------------------------------------------------------------------------------------
LLM_STEP = {"ts": "2026-01-01T10:00:01Z", "node_id": "think", "status": "completed", "duration_ms": 12.3456,
            "effect": {"type": "llm_call", "payload": {}},
            "result": {"content": "I will look.", "model": "m1", "finish_reason": "tool_calls",
                       "tool_calls": [{"name": "search", "call_id": "c1"}, {"name": "read"}]}}
TOOL_STEP = {"ts": "2026-01-01T10:00:02Z", "node_id": "act", "status": "completed",
             "effect": {"type": "tool_calls", "payload": {"tool_calls": [
                 {"name": "search", "call_id": "c1", "arguments": {"q": "x"}},
                 {"name": "read", "arguments": {"path": "a"}},
                 {"name": "fetch", "call_id": "c3", "arguments": {}}]}},
             "result": {"results": [{"call_id": "c1", "success": True, "output": "found it", "error": None},
                                    {"call_id": "c3", "success": False, "output": {"code": 404},
                                     "error": "not found"}]}}
FAILED_STEP = {"ts": "2026-01-01T10:00:03Z", "node_id": "act", "status": "failed", "error": "boom",
               "effect": {"type": "tool_calls", "payload": {}}}
OTHER_STEP = {"node_id": "ask", "status": "completed", "effect": {"type": "ask_user"}, "result": {"answer": "y"}}


def scratchpad() -> Dict[str, Any]:
    return {"sub_run_id": "sub1", "workflow_id": "wf",
            "node_traces": {"act": {"node_id": "act", "steps": [TOOL_STEP, FAILED_STEP]},
                            "think": {"node_id": "think", "steps": [LLM_STEP]},
                            "ask": {"node_id": "ask", "steps": [OTHER_STEP]}}}


EXPECTED = """# Agent Trace Report
- **sub_run_id**: `sub1`
- **workflow_id**: `wf`

## Timeline

### 1. `ask` — `ask_user` (completed)

**Result (raw)**
```json
{
  "answer": "y"
}
```

### 2. `think` — `llm_call` (completed)
- **duration_ms**: 12.346
- **model**: `m1`
- **finish_reason**: `tool_calls`
- **tool_calls_requested**:
  - `search` (call_id=c1)
  - `read`

**Assistant content**
```markdown
I will look.
```

### 3. `act` — `tool_calls` (completed)

#### Tool: `search` (call_id=c1)

**Arguments**
```json
{
  "q": "x"
}
```

**Result**
- **success**: true
```text
found it
```

#### Tool: `read`

**Arguments**
```json
{
  "path": "a"
}
```

_missing tool result in trace entry_

#### Tool: `fetch` (call_id=c3)

**Arguments**
```json
{}
```

**Result**
- **success**: false
- **error**: not found
```json
{
  "code": 404
}
```

### 4. `act` — `tool_calls` (failed)

**Error**
```text
boom
```
"""


def test_report_layout():
    assert render_agent_trace_markdown(scratchpad()) == EXPECTED


def test_report_fallbacks():
    assert render_agent_trace_markdown("x") == "# Agent Trace Report\n\n_No scratchpad provided._\n"
    assert render_agent_trace_markdown({"steps": []}) == (
        "# Agent Trace Report\n\n_No node_traces found in scratchpad._\n")
    assert render_agent_trace_markdown({"node_traces": {}}) == "# Agent Trace Report\n\n_No trace steps found._\n"
    single = render_agent_trace_markdown({"node_id": "think", "steps": [dict(LLM_STEP, node_id=None)]})
    assert "### 1. `think` — `llm_call` (completed)" in single  # a node trace itself is accepted
    one_call = dict(TOOL_STEP, effect={"type": "tool_calls", "payload": {"tool_calls": {"name": "solo"}}})
    assert "#### Tool: `solo`\n" in render_agent_trace_markdown({"node_traces": {"a": {"steps": [one_call]}}})
    no_calls = dict(TOOL_STEP, effect={"type": "tool_calls", "payload": {"tool_calls": []}})
    assert "- **tool_calls**: none" in render_agent_trace_markdown({"node_traces": {"a": {"steps": [no_calls]}}})
    quiet = dict(LLM_STEP, result={"content": "  "}, duration_ms=-1)
    text = render_agent_trace_markdown({"node_traces": {"a": {"steps": [quiet]}}})
    assert "- **tool_calls_requested**: none" in text and "Assistant content" not in text
    assert "duration_ms" not in text and text.endswith("none\n")


def test_report_timestamps_option():
    config = AgentTraceMarkdownReportConfig(include_timestamps=True, json_mode=JsonStringifyMode.MINIFIED)
    text = render_agent_trace_markdown(scratchpad(), config=config)
    assert "### 2. `think` — `llm_call` (completed)\n- **ts**: `2026-01-01T10:00:01Z`\n" in text
    assert text.count("- **ts**: ") == 4
    assert '{\n  "q": "x"\n}' in text  # json_mode is accepted but JSON stays beautified


def test_report_of_a_real_runs_node_traces():
    backend = MemoryBackend()

    def echo(run, effect, *rest) -> EffectOutcome:  # a reference-style host handler
        return EffectOutcome.completed({"echo": effect.payload})

    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store,
                 effect_handlers={EffectType.EMIT_EVENT: echo})
    flow = WorkflowSpec(workflow_id="t", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect(EffectType.EMIT_EVENT, {"name": "e"}, "r"),
                                       next_node="b"),
        "b": lambda run, ctx: StepPlan(node_id="b", complete_output={"ok": True})})
    run_id = rt.start(workflow=flow)
    assert rt.tick(workflow=flow, run_id=run_id).status == RunStatus.COMPLETED
    text = render_agent_trace_markdown({"node_traces": rt.get_node_traces(run_id)})
    assert "### 1. `a` — `emit_event` (completed)" in text and '"echo": {' in text
