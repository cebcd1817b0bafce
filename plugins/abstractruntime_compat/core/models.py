"""Reference path ``abstractruntime.core.models``."""

from abstractruntime.models import (
    Effect,
    EffectType,
    LimitWarning,
    RunState,
    RunStatus,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
)

__all__ = ["Effect", "EffectType", "RunState", "RunStatus", "StepPlan", "StepRecord", "StepStatus", "WaitReason",
           "WaitState", "LimitWarning"]
