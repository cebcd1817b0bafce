"""Reference path ``abstractruntime.storage.offloading`` (the code lives in the ``artifacts`` plugin)."""

from abstractruntime_artifacts.offloading import (
    DEFAULT_MAX_INLINE_BYTES,
    OffloadingLedgerStore,
    OffloadingRunStore,
    offload_large_values,
)

__all__ = ["OffloadingRunStore", "OffloadingLedgerStore", "offload_large_values", "DEFAULT_MAX_INLINE_BYTES"]
