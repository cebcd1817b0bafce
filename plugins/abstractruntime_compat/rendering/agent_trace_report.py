"""Reference path ``abstractruntime.rendering.agent_trace_report``."""

from abstractruntime_rendering.agent_trace_report import AgentTraceMarkdownReportConfig, render_agent_trace_markdown

__all__ = ["AgentTraceMarkdownReportConfig", "render_agent_trace_markdown"]
