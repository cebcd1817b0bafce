"""Reference path ``abstractruntime.core.runtime``."""

from typing import Callable

from abstractruntime.models import Effect, EffectOutcome, RunState, utc_now_iso
from abstractruntime.runtime import DefaultRunContext, Runtime

#: Reference-style effect handler: ``handler(run, effect, default_next_node) -> EffectOutcome`` (or two args).
EffectHandler = Callable[..., EffectOutcome]

__all__ = ["Runtime", "EffectOutcome", "EffectHandler", "DefaultRunContext", "utc_now_iso", "Effect", "RunState"]
