"""Builtin plugin ``waits``: the effects ASK_USER, WAIT_EVENT, WAIT_UNTIL and ANSWER_USER.

None of them touches the outside world (they compute a wait or a message from the run), so they are registered
with ``side_effects=False``: their whole step is one commit.
"""

from __future__ import annotations

from typing import List

from abstractruntime import EffectHandlerDescriptor, EffectType, hookimpl

from .handlers import answer_user, ask_user, wait_event, wait_until


@hookimpl
def abstractruntime_register_effect_handlers() -> List[EffectHandlerDescriptor]:
    return [
        EffectHandlerDescriptor(EffectType.ASK_USER, ask_user, "Wait for a person's answer", side_effects=False),
        EffectHandlerDescriptor(EffectType.WAIT_EVENT, wait_event, "Wait for a named event", side_effects=False),
        EffectHandlerDescriptor(EffectType.WAIT_UNTIL, wait_until, "Wait until an instant", side_effects=False),
        EffectHandlerDescriptor(EffectType.ANSWER_USER, answer_user, "Send a message to the user", side_effects=False),
    ]
