"""Reference path ``abstractruntime.integrations.abstractcore.session_attachments``."""

from abstractruntime_abstractcore.session_attachments import *  # noqa: F401,F403
from abstractruntime_abstractcore.session_attachments import (  # noqa: F401 - public, outside __all__ as in 0.4.2
    ParsedToolMessage,
    __all__,
    parse_tool_message,
)
