"""Reference path ``abstractruntime.core.vars``."""

from ..vars import *  # noqa: F401,F403
from ..vars import __all__  # noqa: F401
