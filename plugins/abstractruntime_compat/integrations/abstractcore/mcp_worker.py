"""Reference path ``abstractruntime.integrations.abstractcore.mcp_worker`` (console script
``abstractruntime-mcp-worker``)."""

import sys

from abstractruntime_abstractcore.mcp_worker import (  # noqa: F401
    McpWorkerState,
    build_worker_state,
    build_wsgi_app,
    handle_mcp_request,
    main,
    serve_stdio,
)

__all__ = ["McpWorkerState", "build_worker_state", "handle_mcp_request", "serve_stdio", "build_wsgi_app", "main"]

if __name__ == "__main__":
    sys.exit(main())
