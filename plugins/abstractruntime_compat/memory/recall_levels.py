"""Reference path ``abstractruntime.memory.recall_levels``."""

from abstractruntime_active_memory.recall_levels import (
    KgQueryPolicy,
    RecallLevel,
    RecallPolicy,
    RehydratePolicy,
    SpanRecallPolicy,
    parse_recall_level,
    policy_for,
)

__all__ = ["RecallLevel", "parse_recall_level", "SpanRecallPolicy", "RehydratePolicy", "KgQueryPolicy",
           "RecallPolicy", "policy_for"]
