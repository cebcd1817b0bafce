"""The closed sets a schedule's fields take, in a module that imports nothing: the command line offers them as
``choices`` when it builds its parser (``--help`` included), without importing the schedule book (zoneinfo, cronsim).
"""

#: ``overlap``: what a fire does while the schedule's previous run is still going
OVERLAPS = ("skip", "allow")
#: ``catch_up``: how many of the fires missed while no driver ran are started
CATCH_UPS = ("none", "one", "all")

__all__ = ["OVERLAPS", "CATCH_UPS"]
