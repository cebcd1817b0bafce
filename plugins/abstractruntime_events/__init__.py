"""Builtin plugin ``events``: the EMIT_EVENT effect.

An emitted event is delivered to every run of the same store waiting for its key -- exact listeners and wildcard
listeners (``name == "*"`` in the same scope) -- by resuming each of them with the event envelope. One semantics
for every emitter: the effect, and the scheduler's ``emit_event`` later, both go through :func:`deliver_event`.
"""

from __future__ import annotations

from typing import List

from abstractruntime import EffectHandlerDescriptor, EffectType, hookimpl

from abstractruntime_pluginkit.lazy import lazy_exports, lazy_function

# Imported at the first event: every plugin package is imported whenever a runtime is built.
__getattr__, __dir__ = lazy_exports(__name__, {"deliver_event": ".emit", "emit_event": ".emit"})

__all__ = ["deliver_event", "emit_event"]


@hookimpl
def abstractruntime_register_effect_handlers() -> List[EffectHandlerDescriptor]:
    # side_effects=True: it changes other runs, so the kernel reserves the step before it runs.
    return [EffectHandlerDescriptor(EffectType.EMIT_EVENT, lazy_function(__name__, ".emit", "emit_event"),
                                    "Deliver an event to waiting runs")]
