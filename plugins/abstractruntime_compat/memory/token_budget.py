"""Reference path ``abstractruntime.memory.token_budget``."""

from abstractruntime_active_memory.token_budget import (
    estimate_message_tokens,
    estimate_tokens,
    trim_messages_to_max_input_tokens,
)

__all__ = ["estimate_tokens", "estimate_message_tokens", "trim_messages_to_max_input_tokens"]
