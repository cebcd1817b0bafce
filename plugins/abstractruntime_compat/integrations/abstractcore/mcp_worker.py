"""Reference path ``abstractruntime.integrations.abstractcore.mcp_worker`` (console script
``abstractruntime-mcp-worker``)."""

import sys

from abstractruntime_abstractcore.mcp_worker import main  # noqa: F401

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
