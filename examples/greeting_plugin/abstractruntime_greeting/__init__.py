"""An example third-party plugin: the effect type ``"greet"``.

A node requests ``Effect(type="greet", payload={"name": "Ada", "language": "fr"}, result_key="greeting")`` and
the run's ``vars["greeting"]`` becomes ``{"text": "Bonjour, Ada!", "language": "fr"}``.
"""

from __future__ import annotations

from typing import List

from abstractruntime import EffectCall, EffectHandlerDescriptor, EffectOutcome, hookimpl

EFFECT_TYPE = "greet"

_GREETINGS = {"en": "Hello", "fr": "Bonjour", "es": "Hola", "de": "Hallo"}


def greet(call: EffectCall) -> EffectOutcome:
    name = call.effect.payload.get("name")
    if not isinstance(name, str) or not name.strip():
        return EffectOutcome.failed("greet requires payload.name (a non-empty string)")
    language = call.effect.payload.get("language", "en")
    word = _GREETINGS.get(language)
    if word is None:
        return EffectOutcome.failed(
            f"greet: unsupported language {language!r}; supported: {', '.join(sorted(_GREETINGS))}"
        )
    return EffectOutcome.completed({"text": f"{word}, {name.strip()}!", "language": language})


@hookimpl
def abstractruntime_register_effect_handlers() -> List[EffectHandlerDescriptor]:
    # side_effects=False: computing a greeting touches nothing outside the run, so the step is one commit.
    return [EffectHandlerDescriptor(EFFECT_TYPE, greet, "Greet someone in their language", side_effects=False)]
