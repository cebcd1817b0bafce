"""Recall levels: how much a memory query or a rehydration may bring back (reference path
``abstractruntime.memory.recall_levels``)."""

from __future__ import annotations

from enum import Enum
from typing import Any, Dict, List, Optional

from attrs import frozen

from abstractruntime.errors import ValidationError


class RecallLevel(str, Enum):
    URGENT = "urgent"
    STANDARD = "standard"
    DEEP = "deep"


def parse_recall_level(raw: Any) -> Optional[RecallLevel]:
    """None or blank: None; ``urgent``/``standard``/``deep`` in any case; anything else raises ``ValueError``."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise ValidationError("recall_level must be a string")
    if isinstance(raw, RecallLevel):
        return raw
    text = str(raw).strip().lower()
    if not text:
        return None
    try:
        return RecallLevel(text)
    except ValueError:
        raise ValidationError(f"Unknown recall_level: {text}") from None


@frozen
class SpanRecallPolicy:
    limit_spans_default: int
    limit_spans_max: int
    deep_allowed: bool
    deep_limit_spans_max: int
    deep_limit_messages_per_span_max: int
    connected_allowed: bool
    neighbor_hops_max: int
    max_messages_default: int
    max_messages_max: int


@frozen
class RehydratePolicy:
    max_messages_default: int
    max_messages_max: int


@frozen
class KgQueryPolicy:
    min_score_default: float
    min_score_floor: float
    limit_default: int
    limit_max: int
    max_input_tokens_default: int
    max_input_tokens_max: int


@frozen
class RecallPolicy:
    level: RecallLevel
    span: SpanRecallPolicy
    rehydrate: RehydratePolicy
    kg: KgQueryPolicy


_POLICIES: Dict[RecallLevel, RecallPolicy] = {
    RecallLevel.URGENT: RecallPolicy(RecallLevel.URGENT, SpanRecallPolicy(2, 3, False, 0, 0, False, 0, 30, 60),
                                     RehydratePolicy(30, 60), KgQueryPolicy(0.55, 0.5, 20, 40, 600, 1000)),
    RecallLevel.STANDARD: RecallPolicy(RecallLevel.STANDARD, SpanRecallPolicy(5, 8, True, 25, 200, True, 1, 80, 150),
                                       RehydratePolicy(80, 200), KgQueryPolicy(0.4, 0.25, 80, 200, 1200, 3000)),
    RecallLevel.DEEP: RecallPolicy(RecallLevel.DEEP, SpanRecallPolicy(8, 20, True, 100, 400, True, 2, 200, 600),
                                   RehydratePolicy(200, 800), KgQueryPolicy(0.25, 0.0, 200, 1000, 2400, 6000)),
}


def policy_for(level: Any) -> RecallPolicy:
    """The policy of a level (a :class:`RecallLevel` or its name)."""
    parsed = parse_recall_level(level)
    if parsed is None:
        raise ValidationError("policy_for needs a recall level: urgent, standard or deep")
    return _POLICIES[parsed]


def level_of(payload: Any) -> Optional[RecallLevel]:
    """The level a MEMORY_QUERY / MEMORY_REHYDRATE payload asks for (``recall_level`` or ``recallLevel``); an
    invalid value raises ``ValueError`` (the effect fails)."""
    if not isinstance(payload, dict):
        return None
    return parse_recall_level(payload.get("recall_level", payload.get("recallLevel")))


class Budget:
    """Applies a level's limits to a payload: defaults for what is absent, clamping (or disabling) what exceeds
    them, one warning per change (``recall_level=<lvl>: clamped <field> from <a> to <b>``)."""

    def __init__(self, level: RecallLevel) -> None:
        self.level = level
        self.warnings: List[str] = []

    def clamp(self, field_name: str, value: Optional[int], default: int, maximum: int) -> int:
        if value is None:
            return default
        if value > maximum:
            self.warnings.append(f"recall_level={self.level.value}: clamped {field_name} from {value} to {maximum}")
            return maximum
        return value

    def allow(self, field_name: str, wanted: bool, allowed: bool) -> bool:
        if wanted and not allowed:
            self.warnings.append(f"recall_level={self.level.value}: disabled {field_name} (not allowed at this level)")
            return False
        return wanted


__all__ = ["RecallLevel", "parse_recall_level", "level_of", "Budget", "SpanRecallPolicy", "RehydratePolicy",
           "KgQueryPolicy", "RecallPolicy", "policy_for"]
