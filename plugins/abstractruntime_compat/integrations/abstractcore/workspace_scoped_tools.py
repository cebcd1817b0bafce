"""Reference path ``abstractruntime.integrations.abstractcore.workspace_scoped_tools`` (the workspace helpers; a
run's own policy is the sealed one of the ``workspace`` plugin, which these can only narrow)."""

from abstractruntime_abstractcore.workspace_scoped_tools import *  # noqa: F401,F403
from abstractruntime_abstractcore.workspace_scoped_tools import __all__  # noqa: F401
