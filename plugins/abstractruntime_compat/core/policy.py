"""Reference path ``abstractruntime.core.policy``: the kernel's effect policy, and the reference's two preset
policies (``RetryPolicy``, ``NoRetryPolicy``; ``abstractruntime.RetryPolicy`` resolves here too)."""

from attrs import define

from abstractruntime.models import Effect, EffectType
from abstractruntime.policy import DefaultEffectPolicy, EffectPolicy, compute_idempotency_key


@define(init=False)
class RetryPolicy(DefaultEffectPolicy):
    """LLM calls 3 attempts, tool calls 2, everything else 1."""

    def __init__(
        self,
        *,
        llm_max_attempts: int = 3,
        tool_max_attempts: int = 2,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
    ) -> None:
        self.__attrs_init__(
            default_max_attempts=1,
            default_backoff_base=backoff_base,
            default_backoff_max=backoff_max,
            effect_max_attempts={
                EffectType.LLM_CALL.value: llm_max_attempts,
                EffectType.TOOL_CALLS.value: tool_max_attempts,
            },
        )


@define(init=False)
class NoRetryPolicy(DefaultEffectPolicy):
    """Every effect gets exactly one attempt."""

    def __init__(self) -> None:
        self.__attrs_init__(default_max_attempts=1)

    def max_attempts(self, effect: Effect) -> int:
        return 1


__all__ = ["EffectPolicy", "DefaultEffectPolicy", "RetryPolicy", "NoRetryPolicy", "compute_idempotency_key"]
