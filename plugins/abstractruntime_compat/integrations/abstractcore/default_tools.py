"""Reference path ``abstractruntime.integrations.abstractcore.default_tools`` (the reference's signatures: the
functions take no toolset selection; the plugin's own, in :mod:`abstractruntime_abstractcore.default_tools`, do)."""

from abstractruntime_abstractcore.default_tools_042 import *  # noqa: F401,F403
from abstractruntime_abstractcore.default_tools_042 import __all__  # noqa: F401
