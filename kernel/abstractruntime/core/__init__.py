"""Reference path ``abstractruntime.core``: the kernel's public names under their 0.4.2 import paths."""

from ..models import (
    Effect,
    EffectType,
    LimitWarning,
    RunState,
    RunStatus,
    RuntimeConfig,
    StepPlan,
    WaitReason,
    WaitState,
    WorkflowSpec,
)
from ..runtime import Runtime
from ..vars import LIMITS, ensure_limits, get_limits

__all__ = [
    "Runtime", "RuntimeConfig", "WorkflowSpec", "LimitWarning", "LIMITS", "ensure_limits", "get_limits",
    "Effect", "EffectType", "RunState", "RunStatus", "StepPlan", "WaitReason", "WaitState",
]
