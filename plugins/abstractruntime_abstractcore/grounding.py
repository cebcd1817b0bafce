"""Where the per-turn grounding of LLM calls (integration spec §2.2; the functions live in :mod:`.turn_grounding`)
is applied to an ``llm_call`` effect.

:func:`abstractruntime_prepare_ledger_records` grounds the payload of an ``llm_call`` effect *in place* when its
``started`` row is about to be committed -- after the kernel computed the idempotency key from the ungrounded
payload, before the handler runs -- so the ``started``/``completed`` rows, the node trace and the handler all see
the grounded prompt. The handler grounds the payload again (a no-op) for the paths that commit the ``started``
row after the call (reference-style handlers given to ``Runtime(effect_handlers=...)``). Disabled by
``plugin_options.abstractcore.grounding = false`` (or ``attach(..., grounding=False)``) and per call by
``payload.grounding: false``.
"""

from __future__ import annotations

from typing import Any, List

from abstractruntime import hookimpl


def ground_payload(payload: Any) -> None:
    """Ground an ``llm_call`` payload in place (``prompt``, else ``messages``), unless ``payload.grounding`` is
    false. Only top-level keys are replaced: the caller's message list and dicts are not changed."""
    if not isinstance(payload, dict) or payload.get("grounding") is False:
        return
    from .turn_grounding import inject_turn_grounding  # on first use: not when the plugin is discovered

    prompt, messages = payload.get("prompt"), payload.get("messages")
    grounded_prompt, grounded_messages = inject_turn_grounding(prompt, messages)
    if grounded_prompt != prompt:
        payload["prompt"] = grounded_prompt
    elif isinstance(messages, list) and grounded_messages != messages:
        payload["messages"] = grounded_messages


def grounding_enabled(runtime: Any) -> bool:
    """``attach(..., grounding=)``, else ``plugin_options.abstractcore.grounding`` (default true). As in 0.4.2, every
    ``llm_call`` is grounded while this plugin is loaded, whichever handler runs it (a host's own handler too)."""
    from .plugin import _ATTACHED, _options

    try:
        attached = runtime.stash.get(_ATTACHED)
        if attached is not None:
            return bool(attached.grounding)
        return bool(_options(runtime).grounding)
    except Exception:  # a runtime without stash/options (a stand-in): ground
        return True


@hookimpl(wrapper=True)
def abstractruntime_prepare_ledger_records(runtime: Any, run_id: str, records: List[Any]) -> Any:
    """Ground ``llm_call`` payloads of ``started`` rows before any other implementation sees the rows (a wrapper
    runs first: offloading and hashing see the grounded payload)."""
    try:
        started = [record.effect for record in records if _started_llm_call(record)]
        if started and grounding_enabled(runtime):
            for effect in started:
                ground_payload(effect.get("payload"))
    except Exception:  # grounding must never block a commit
        pass
    return (yield)


def _started_llm_call(record: Any) -> bool:
    effect, status = getattr(record, "effect", None), getattr(record, "status", None)
    return (getattr(status, "value", status) == "started" and isinstance(effect, dict)
            and effect.get("type") == "llm_call")


def _has_started_llm_call(records: List[Any], **_: Any) -> bool:
    for record in records:  # every commit with records asks: one loop, no call per record
        effect = getattr(record, "effect", None)
        if isinstance(effect, dict) and effect.get("type") == "llm_call" and _started_llm_call(record):
            return True
    return False


#: a commit without a started llm_call row passes this wrapper by (docs/hooks.md, ``active``)
abstractruntime_prepare_ledger_records.active = _has_started_llm_call  # type: ignore[attr-defined]


__all__ = ["ground_payload", "grounding_enabled"]
