"""OpenTelemetry GenAI semantic-convention attributes for ``LLM_CALL`` effect spans, from what the call and the
``abstractcore`` plugin's result carry: the provider and model asked for (the effect's payload, else the run's
``vars._runtime`` that the abstractcore plugin fills in), the model that answered, the token usage and the finish
reason. An attribute whose value is unknown is left out."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

LLM_CALL = "llm_call"

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"  # the older name of gen_ai.provider.name, still read by many backends
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TEMPERATURE = "gen_ai.request.temperature"
MAX_TOKENS = "gen_ai.request.max_tokens"


def _text(value: Any) -> Optional[str]:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def attributes(payload: Mapping[str, Any], run_vars: Any, outcome: Any) -> Dict[str, Any]:
    """The ``gen_ai.*`` attributes of one LLM call."""
    runtime_ns = run_vars.get("_runtime") if isinstance(run_vars, dict) else None
    runtime_ns = runtime_ns if isinstance(runtime_ns, dict) else {}
    params = payload.get("params") if isinstance(payload.get("params"), dict) else {}
    out: Dict[str, Any] = {OPERATION: "chat"}
    provider = _text(payload.get("provider")) or _text(params.get("_provider")) or _text(runtime_ns.get("provider"))
    if provider is not None:
        out[PROVIDER] = out[SYSTEM] = provider.lower()
    model = _text(payload.get("model")) or _text(params.get("_model")) or _text(runtime_ns.get("model"))
    if model is not None:
        out[REQUEST_MODEL] = model
    temperature = params.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        out[TEMPERATURE] = float(temperature)
    max_tokens = _int(params.get("max_tokens") or params.get("max_output_tokens"))
    if max_tokens is not None:
        out[MAX_TOKENS] = max_tokens
    result = getattr(outcome, "result", None)
    if getattr(outcome, "status", None) == "completed" and isinstance(result, dict):
        response_model = _text(result.get("model"))
        if response_model is not None:
            out[RESPONSE_MODEL] = response_model
        usage = result.get("usage") if isinstance(result.get("usage"), dict) else {}
        for key, fallback, name in (("input_tokens", "prompt_tokens", INPUT_TOKENS),
                                    ("output_tokens", "completion_tokens", OUTPUT_TOKENS)):
            tokens = _int(usage.get(key) if usage.get(key) is not None else usage.get(fallback))
            if tokens is not None:
                out[name] = tokens
        finish = _text(result.get("finish_reason"))
        if finish is not None:
            out[FINISH_REASONS] = (finish,)
    return out


def annotate(span: Any, call: Any, outcome: Any) -> None:
    payload = call.effect.payload if isinstance(call.effect.payload, dict) else {}
    span.set_attributes(attributes(payload, call.run.vars, outcome))


__all__ = ["LLM_CALL", "attributes", "annotate"]
