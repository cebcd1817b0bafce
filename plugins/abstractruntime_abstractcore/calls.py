"""What the LLM_CALL and TOOL_CALLS handlers share about an effect call: its idempotency key.

A plugin handler gets it from the kernel (``call.idempotency_key``); a reference-style call (see
:func:`.handlers.build_effect_handlers`) may lack it, and then it is computed the way ``DefaultEffectPolicy`` does.
"""

from __future__ import annotations

from typing import Any

from abstractruntime.policy import compute_idempotency_key


def idempotency_key(call: Any) -> str:
    """The step's idempotency key: the call's own, else computed from the run, node, effect and step."""
    key = getattr(call, "idempotency_key", None)
    if key:
        return key
    run = call.run
    return compute_idempotency_key(run_id=run.run_id, node_id=call.node_id, effect=call.effect, step=run.step)


__all__ = ["idempotency_key"]
