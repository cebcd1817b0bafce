"""``abstractruntime.integrations.abstractcore.factory`` (the runtime factories)."""

from abstractruntime_abstractcore.factories import (  # noqa: F401
    create_hybrid_runtime,
    create_local_file_runtime,
    create_local_runtime,
    create_remote_file_runtime,
    create_remote_runtime,
)

__all__ = ["create_local_runtime", "create_remote_runtime", "create_hybrid_runtime", "create_local_file_runtime",
           "create_remote_file_runtime"]
