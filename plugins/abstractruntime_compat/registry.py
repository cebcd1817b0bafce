"""TEMPORARY-SHIM."""
from abstractruntime_pluginkit.registry import *  # noqa
from abstractruntime_pluginkit.registry import __all__  # noqa
