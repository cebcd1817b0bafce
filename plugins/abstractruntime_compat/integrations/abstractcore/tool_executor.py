"""Reference path ``abstractruntime.integrations.abstractcore.tool_executor``."""

from abstractruntime_abstractcore.tool_executor import (  # noqa: F401
    AbstractCoreToolExecutor,
    ApprovalToolExecutor,
    ArtifactToolResultJournal,
    DelegatingMcpToolExecutor,
    MappingToolExecutor,
    McpToolExecutor,
    MemoryToolResultJournal,
    PassthroughToolExecutor,
    ToolExecutor,
    ToolResultJournal,
    logger,
)

__all__ = ["ToolExecutor", "MappingToolExecutor", "AbstractCoreToolExecutor", "PassthroughToolExecutor",
           "ApprovalToolExecutor", "McpToolExecutor", "DelegatingMcpToolExecutor", "ToolResultJournal",
           "ArtifactToolResultJournal", "MemoryToolResultJournal", "logger"]
