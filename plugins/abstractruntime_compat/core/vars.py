"""Reference path ``abstractruntime.core.vars``."""

from abstractruntime_vars.namespaces import *  # noqa: F401,F403
from abstractruntime_vars.namespaces import __all__  # noqa: F401
