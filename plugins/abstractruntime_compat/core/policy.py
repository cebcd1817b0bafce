"""Reference path ``abstractruntime.core.policy``."""

from abstractruntime.policy import DefaultEffectPolicy, EffectPolicy, NoRetryPolicy, RetryPolicy, compute_idempotency_key

__all__ = ["EffectPolicy", "DefaultEffectPolicy", "RetryPolicy", "NoRetryPolicy", "compute_idempotency_key"]
