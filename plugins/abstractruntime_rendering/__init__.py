"""Library ``abstractruntime_rendering``: text renderings of runtime data for people and prompts -- JSON as text
(:func:`stringify_json`) and the Markdown report of an agent's trace (:func:`render_agent_trace_markdown`).

A library, not a plugin: it registers no hooks. The reference path is ``abstractruntime.rendering``
(served by the compatibility overlay). See docs/memory.md#rendering.
"""

from .agent_trace_report import AgentTraceMarkdownReportConfig, render_agent_trace_markdown
from .json_stringify import JsonStringifyMode, stringify_json

__all__ = ["JsonStringifyMode", "stringify_json", "render_agent_trace_markdown", "AgentTraceMarkdownReportConfig"]
