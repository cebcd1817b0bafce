"""An LLM_CALL through AbstractCore's real openai-compatible provider against the loopback fake server: its effect
span carries the GenAI semantic-convention attributes, and the HTTP client's span (httpx, instrumented by the host)
nests inside it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from abstractruntime import Effect, EffectType, RunStatus, StepPlan, WorkflowSpec

if importlib.util.find_spec("abstractcore") is None:  # pragma: no cover - abstractcore is in the test extra
    pytest.skip("abstractcore is not installed", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "abstractcore"))
from fake_llm_server import MODEL, FakeLLMServer  # noqa: E402

from abstractruntime_abstractcore import create_local_runtime  # noqa: E402


@pytest.fixture
def llm_server():
    server = FakeLLMServer(model=MODEL).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def instrumented_httpx(otel):
    """The host's httpx instrumentation (opentelemetry-instrumentation-httpx), on the test's provider."""
    httpx_instrumentation = pytest.importorskip("opentelemetry.instrumentation.httpx")
    instrumentor = httpx_instrumentation.HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def _one_call(payload):
    return WorkflowSpec(workflow_id="llm1", entry_node="call", nodes={
        "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(EffectType.LLM_CALL, payload, "out"),
                                          next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"out": run.vars.get("out")}),
    })


def test_an_llm_call_span_has_gen_ai_attributes_and_the_http_span_inside(otel, instrumented_httpx, llm_server):
    llm_server.push({"content": "Hello there", "usage": {"prompt_tokens": 11, "completion_tokens": 3}})
    rt = create_local_runtime(provider="openai-compatible", model=MODEL,
                              llm_kwargs={"base_url": llm_server.base_url, "timeout": 30})
    flow = _one_call({"prompt": "Say hello", "params": {"temperature": 0, "max_tokens": 64}})
    try:
        state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
    finally:
        rt.close()
    assert state.status is RunStatus.COMPLETED, state.error

    (effect,) = otel.spans("abstractruntime.effect")
    attributes = dict(effect.attributes)
    assert attributes["abstractruntime.effect.type"] == "llm_call"
    assert {k: v for k, v in attributes.items() if k.startswith("gen_ai.")} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai-compatible",
        "gen_ai.system": "openai-compatible",
        "gen_ai.request.model": MODEL,
        "gen_ai.request.temperature": 0.0,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.response.model": MODEL,
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.response.finish_reasons": ("stop",),
    }
    http = [s for s in otel.spans() if s.name.startswith("POST")]
    assert http, [s.name for s in otel.spans()]
    for span in http:  # AbstractCore's request to the model server, a child of the effect span
        assert span.parent.span_id == effect.context.span_id
        assert span.context.trace_id == effect.context.trace_id


def test_a_failed_llm_call_is_an_error_span_with_the_requested_model(otel, llm_server):
    llm_server.push({"error": 400, "message": "context length exceeded"})
    rt = create_local_runtime(provider="openai-compatible", model=MODEL,
                              llm_kwargs={"base_url": llm_server.base_url, "timeout": 30})
    flow = _one_call({"prompt": "Say hello"})
    try:
        state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
    finally:
        rt.close()
    assert state.status is RunStatus.FAILED
    (effect,) = otel.spans("abstractruntime.effect")
    assert effect.status.status_code.name == "ERROR"
    assert effect.attributes["gen_ai.request.model"] == MODEL
    assert "gen_ai.usage.input_tokens" not in effect.attributes
