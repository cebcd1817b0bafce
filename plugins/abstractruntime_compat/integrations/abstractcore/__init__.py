"""Reference path ``abstractruntime.integrations.abstractcore`` (the code lives in the ``abstractcore`` plugin,
:mod:`abstractruntime_abstractcore`). Importing it does not import ``abstractcore``; using it needs the
``abstractcore`` extra."""

from abstractruntime_abstractcore import *  # noqa: F401,F403
from abstractruntime_abstractcore import __all__  # noqa: F401
