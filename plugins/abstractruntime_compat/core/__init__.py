"""Reference path ``abstractruntime.core``: the kernel's public names under their 0.4.2 import paths."""

from abstractruntime.models import (
    Effect,
    EffectType,
    RunState,
    RunStatus,
    RuntimeConfig,
    StepPlan,
    WaitReason,
    WaitState,
    WorkflowSpec,
)
from abstractruntime.runtime import Runtime
from abstractruntime_observation import LimitWarning
from abstractruntime_vars.namespaces import LIMITS, ensure_limits, get_limits

__all__ = [
    "Runtime", "RuntimeConfig", "WorkflowSpec", "LimitWarning", "LIMITS", "ensure_limits", "get_limits",
    "Effect", "EffectType", "RunState", "RunStatus", "StepPlan", "WaitReason", "WaitState",
]
