"""``[abstractruntime.plugin_options.schedules]`` (cheap to import: checked when a runtime is built)."""

from __future__ import annotations

import attrs
from attrs import field, frozen


@frozen
class SchedulesOptions:
    #: with ``catch_up="none"``, a fire time found due later than this (seconds) is dropped as missed
    misfire_grace_s: float = field(default=60.0, validator=attrs.validators.ge(0))
    #: drivers (scheduler, PostgreSQL worker) look for due schedules at most this often (seconds)
    poll_interval_s: float = field(default=0.5, validator=attrs.validators.ge(0))


__all__ = ["SchedulesOptions"]
