"""Reference path ``abstractruntime.core.models``."""

from abstractruntime.models import (
    Effect,
    EffectType,
    RunState,
    RunStatus,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
)
from abstractruntime_observation import LimitWarning

__all__ = ["Effect", "EffectType", "RunState", "RunStatus", "StepPlan", "StepRecord", "StepStatus", "WaitReason",
           "WaitState", "LimitWarning"]
