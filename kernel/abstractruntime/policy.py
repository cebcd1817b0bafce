"""Effect policies: attempts, backoff and idempotency keys (reference API). The key includes ``RunState.step``: a
loop repeating an effect executes it again, a crash-and-retry of the same step reuses its outcome."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Protocol, runtime_checkable

from attrs import define

from .models import Effect, EffectType, RunState, effect_type_value


@runtime_checkable
class EffectPolicy(Protocol):
    def max_attempts(self, effect: Effect) -> int: ...

    def backoff_seconds(self, *, effect: Effect, attempt: int) -> float: ...

    def idempotency_key(self, *, run: RunState, node_id: str, effect: Effect) -> str: ...


_TOOL_CALL_ID_KEYS = ("call_id", "id", "runtime_call_id", "model_call_id", "idempotency_key")


def _normalize_tool_call(call: Any) -> Any:
    if not isinstance(call, dict):
        return call
    out = {k: v for k, v in call.items() if k not in _TOOL_CALL_ID_KEYS}
    if isinstance(out.get("name"), str):
        out["name"] = out["name"].strip()
    if "arguments" in out:
        args = out["arguments"]
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                args = {}
        out["arguments"] = args if isinstance(args, dict) else {}
    if isinstance(out.get("function"), dict):
        out["function"] = _normalize_tool_call(out["function"])
    return out


def _normalize_tool_calls_payload(payload: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of a TOOL_CALLS payload without what drifts across an LLM re-run (spec §6): provider/runtime call
    ids dropped, names stripped, ``arguments`` as a dict, ``allowed_tools`` as a sorted set."""
    out = dict(payload)
    if isinstance(out.get("tool_calls"), list):
        out["tool_calls"] = [_normalize_tool_call(c) for c in out["tool_calls"]]
    if isinstance(out.get("allowed_tools"), (list, tuple, set)):
        out["allowed_tools"] = sorted({t.strip() for t in out["allowed_tools"] if isinstance(t, str) and t.strip()})
    return out


def compute_idempotency_key(*, run_id: str, node_id: str, effect: Effect, step: Optional[int] = None) -> str:
    """``sha256`` of the canonical JSON of run, node, effect type, payload and (when given) step; a TOOL_CALLS payload
    is normalised first (:func:`_normalize_tool_calls_payload`), so drifting ids or encodings get the same key."""
    payload = effect.payload if isinstance(effect.payload, dict) else {}
    effect_type = effect_type_value(effect.type)
    if effect_type == EffectType.TOOL_CALLS.value:
        payload = _normalize_tool_calls_payload(payload)
    data: Dict[str, Any] = {"run_id": run_id, "node_id": node_id, "effect_type": effect_type, "effect_payload": payload}
    if step is not None:
        data["step"] = step
    import hashlib  # here: ``import abstractruntime`` stays light

    return hashlib.sha256(_CANONICAL.encode(data).encode("utf-8")).hexdigest()[:32]


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # json.dumps(...) builds one per call (2 us)


@define
class DefaultEffectPolicy:
    default_max_attempts: int = 1
    default_backoff_base: float = 1.0
    default_backoff_max: float = 60.0
    effect_max_attempts: Optional[Dict[str, int]] = None

    def max_attempts(self, effect: Effect) -> int:
        overrides = self.effect_max_attempts or {}
        value = overrides.get(effect_type_value(effect.type), self.default_max_attempts)
        return max(1, int(value))

    def backoff_seconds(self, *, effect: Effect, attempt: int) -> float:
        return min(self.default_backoff_base * (2 ** max(0, attempt - 1)), self.default_backoff_max)

    def idempotency_key(self, *, run: RunState, node_id: str, effect: Effect) -> str:
        return compute_idempotency_key(run_id=run.run_id, node_id=node_id, effect=effect, step=run.step)
