"""TEMPORARY-SHIM."""
from abstractruntime_pluginkit.run_tree import *  # noqa
from abstractruntime_pluginkit.run_tree import __all__  # noqa
