"""Reference path ``abstractruntime.integrations.abstractcore.observability``: the bridge from the ledger to
AbstractCore's ``GlobalEventBus`` (the code lives in the ``abstractcore`` plugin)."""

from abstractruntime_abstractcore.observability import attach_global_event_bus_bridge, emit_step_record

__all__ = ["emit_step_record", "attach_global_event_bus_bridge"]
