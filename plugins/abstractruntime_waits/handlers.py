"""Handlers of the wait effects, with the reference's payloads, results and error messages."""

from __future__ import annotations

from typing import Any, List, Optional

from abstractruntime import EffectCall, EffectOutcome, WaitReason, WaitState
from abstractruntime_pluginkit.event_keys import build_event_wait_key
from abstractruntime.timeutil import now_utc, parse_instant


def _non_blank(value: Any) -> Optional[str]:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _choices(value: Any) -> Optional[List[str]]:
    if not isinstance(value, list):
        return None
    return [c.strip() for c in value if isinstance(c, str) and c.strip()]


def ask_user(call: EffectCall) -> EffectOutcome:
    payload = call.effect.payload
    prompt = payload.get("prompt")
    if not prompt:
        return EffectOutcome.failed("ask_user requires payload.prompt")
    choices = payload.get("choices")
    return EffectOutcome.waiting(
        WaitState(
            reason=WaitReason.USER,
            wait_key=payload.get("wait_key") or f"user:{call.run.run_id}:{call.run.current_node}",
            resume_to_node=payload.get("resume_to_node") or call.default_next_node,
            result_key=call.effect.result_key,
            prompt=str(prompt),
            choices=list(choices) if isinstance(choices, list) else None,
            allow_free_text=bool(payload.get("allow_free_text", True)),
        )
    )


def wait_event(call: EffectCall) -> EffectOutcome:
    payload = call.effect.payload
    run = call.run
    wait_key = _non_blank(payload.get("wait_key"))
    if wait_key is None:
        name = _non_blank(payload.get("name")) or _non_blank(payload.get("event_name"))
        if name is None:
            return EffectOutcome.failed("wait_event requires payload.wait_key or payload.name")
        try:
            wait_key = build_event_wait_key(
                scope=payload.get("scope") or "session",
                name=name,
                session_id=_non_blank(payload.get("session_id")) or run.session_id or run.run_id,
                workflow_id=run.workflow_id,
                run_id=run.run_id,
            )
        except ValueError as exc:
            return EffectOutcome.failed(f"wait_event invalid payload: {exc}")
    allow_free_text = payload.get("allow_free_text", payload.get("allowFreeText", True))
    details = payload.get("details")
    return EffectOutcome.waiting(
        WaitState(
            reason=WaitReason.EVENT,
            wait_key=wait_key,
            resume_to_node=payload.get("resume_to_node") or call.default_next_node,
            result_key=call.effect.result_key,
            prompt=_non_blank(payload.get("prompt")),
            choices=_choices(payload.get("choices")),
            allow_free_text=bool(allow_free_text),
            details=dict(details) if isinstance(details, dict) else None,
        )
    )


def wait_until(call: EffectCall) -> EffectOutcome:
    payload = call.effect.payload
    until = payload.get("until")
    if not until:
        return EffectOutcome.failed("wait_until requires payload.until (ISO timestamp)")
    try:
        deadline = parse_instant(until)
    except ValueError as exc:
        return EffectOutcome.failed(f"wait_until: {exc}")
    if now_utc() >= deadline:
        return EffectOutcome.completed({"until": until, "ready": True})
    return EffectOutcome.waiting(
        WaitState(
            reason=WaitReason.UNTIL,
            until=str(until),
            resume_to_node=payload.get("resume_to_node") or call.default_next_node,
            result_key=call.effect.result_key,
        )
    )


_LEVELS = {"message": "message", "info": "message", "warning": "warning", "warn": "warning", "error": "error"}


def answer_user(call: EffectCall) -> EffectOutcome:
    payload = call.effect.payload
    message = payload.get("message")
    if message is None:
        message = payload.get("text")
        if message is None:
            message = payload.get("content")
    if message is None:
        return EffectOutcome.failed("answer_user requires payload.message")
    level = payload.get("level")
    level_v = _LEVELS.get(level.strip().lower(), "message") if isinstance(level, str) else "message"
    return EffectOutcome.completed({"message": str(message), "level": level_v})
