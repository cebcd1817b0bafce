"""TEMPORARY-SHIM."""
from abstractruntime_pluginkit.event_keys import *  # noqa
from abstractruntime_pluginkit.event_keys import __all__  # noqa
