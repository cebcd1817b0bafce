"""Reference path ``abstractruntime.integrations.abstractcore.default_tools``."""

from abstractruntime_abstractcore.default_tools import *  # noqa: F401,F403
from abstractruntime_abstractcore.default_tools import __all__  # noqa: F401
