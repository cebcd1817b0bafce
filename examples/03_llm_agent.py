"""A small tool-using LLM agent (ReAct loop) on a local model server, with the AbstractCore integration.

    pip install 'abstractruntime[abstractcore]'
    export ABSTRACTRUNTIME_LLM_BASE_URL=http://127.0.0.1:1234/v1   # any OpenAI-compatible server (LM Studio,
    export ABSTRACTRUNTIME_LLM_MODEL=qwen3-4b                       # llama.cpp, vLLM, Ollama's /v1, ...)
    python examples/03_llm_agent.py "What is 17 * 23 + 4?"

Optional: ``ABSTRACTRUNTIME_LLM_PROVIDER`` (default ``openai-compatible``; e.g. ``ollama``, ``lmstudio``) and
``ABSTRACTRUNTIME_LLM_API_KEY``. Without a configured server the script explains how to configure one and exits 0.

The loop: ``llm`` (LLM_CALL with tool specs) -> ``route`` -> ``tools`` (TOOL_CALLS, allowlisted, executed by a
``MappingToolExecutor``) -> ``observe`` -> ``llm`` ... until the model answers without a tool call. Every step is
checkpointed; every LLM and tool call is in the ledger (printed at the end).
"""

from __future__ import annotations

import json
import os
import sys

from abstractruntime import Effect, EffectType, RunStatus, StepPlan, WorkflowSpec

MAX_TURNS = 6


def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


TOOL_SPECS = [
    {"name": name, "description": fn.__doc__, "parameters": {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}
    for name, fn in (("multiply", multiply), ("add", add))
]


def llm(run, ctx):
    return StepPlan(node_id="llm", effect=Effect(EffectType.LLM_CALL, {
        "messages": run.vars["messages"], "tools": TOOL_SPECS,
        "system_prompt": "Use the tools for arithmetic. Answer briefly once you have the result.",
        "params": {"temperature": 0}}, result_key="llm"), next_node="route")


def route(run, ctx):
    run.vars["turns"] = run.vars.get("turns", 0) + 1
    answer = run.vars["llm"]
    if answer.get("tool_calls") and run.vars["turns"] < MAX_TURNS:
        return StepPlan(node_id="route", next_node="tools")
    return StepPlan(node_id="route", complete_output={"answer": answer.get("content"), "turns": run.vars["turns"]})


def tools(run, ctx):
    return StepPlan(node_id="tools", effect=Effect(EffectType.TOOL_CALLS, {
        "tool_calls": run.vars["llm"]["tool_calls"], "allowed_tools": ["multiply", "add"]},
        result_key="tool_results"), next_node="observe")


def observe(run, ctx):
    calls = run.vars["llm"]["tool_calls"]
    results = run.vars["tool_results"]["results"]
    lines = [f"{c['name']}({json.dumps(c['arguments'])}) = {r['output'] if r['success'] else 'ERROR ' + r['error']}"
             for c, r in zip(calls, results)]
    run.vars["messages"] = run.vars["messages"] + [
        {"role": "assistant", "content": "Calling tools: " + ", ".join(c["name"] for c in calls)},
        {"role": "user", "content": "Tool results:\n" + "\n".join(lines)}]
    return StepPlan(node_id="observe", next_node="llm")


AGENT = WorkflowSpec(workflow_id="llm_agent", entry_node="llm",
                     nodes={"llm": llm, "route": route, "tools": tools, "observe": observe})

HOW_TO = """No model server configured, nothing to do.

To run this example, start any OpenAI-compatible server with a model that supports tool calls, e.g.
  LM Studio (Developer tab -> Start server)   -> http://127.0.0.1:1234/v1
  llama.cpp: llama-server -m model.gguf --jinja -> http://127.0.0.1:8080/v1
  Ollama: ollama serve; ollama pull qwen3:4b  -> http://127.0.0.1:11434/v1
then:
  pip install 'abstractruntime[abstractcore]'
  export ABSTRACTRUNTIME_LLM_BASE_URL=http://127.0.0.1:1234/v1
  export ABSTRACTRUNTIME_LLM_MODEL=<model name as the server lists it>
  python examples/03_llm_agent.py "What is 17 * 23 + 4?"
"""


def main(argv: list) -> int:
    base_url = os.environ.get("ABSTRACTRUNTIME_LLM_BASE_URL", "").strip()
    model = os.environ.get("ABSTRACTRUNTIME_LLM_MODEL", "").strip()
    if not base_url or not model:
        print(HOW_TO)
        return 0
    import importlib.util

    if importlib.util.find_spec("abstractcore") is None:  # (the integration imports it lazily, isolated)
        print("The AbstractCore integration is not installed: pip install 'abstractruntime[abstractcore]'")
        return 0
    from abstractruntime_abstractcore import MappingToolExecutor, create_local_runtime

    question = " ".join(argv) or "What is 17 * 23 + 4?"
    llm_kwargs = {"base_url": base_url}
    if os.environ.get("ABSTRACTRUNTIME_LLM_API_KEY"):
        llm_kwargs["api_key"] = os.environ["ABSTRACTRUNTIME_LLM_API_KEY"]
    provider = os.environ.get("ABSTRACTRUNTIME_LLM_PROVIDER", "openai-compatible").strip() or "openai-compatible"
    runtime = create_local_runtime(provider=provider, model=model, llm_kwargs=llm_kwargs,
                                   tool_executor=MappingToolExecutor({"multiply": multiply, "add": add},
                                                                     timeout_s=30))
    run_id = runtime.start(workflow=AGENT, vars={"messages": [{"role": "user", "content": question}]})
    state = runtime.tick(workflow=AGENT, run_id=run_id, max_steps=4 * MAX_TURNS + 2)
    print(f"run {run_id}: {state.status.value}")
    for row in runtime.get_ledger(run_id):
        effect = row.get("effect") or {}
        if effect.get("type") in ("llm_call", "tool_calls") and row["status"] != "started":
            result = row.get("result") or {}
            detail = result.get("tool_calls") or result.get("content") or result.get("results") or row.get("error")
            print(f"  {row['node_id']:<6} {effect['type']:<10} {row['status']:<9} {json.dumps(detail)[:160]}")
    if state.status is RunStatus.COMPLETED:
        print(f"answer: {state.output['answer']}")
        return 0
    print(f"error: {state.error}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
