"""The hookspec of the extension point this plugin owns (added to every runtime's plugin manager through the
kernel's ``abstractruntime_add_hookspecs``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from abstractruntime import Runtime

hookspec = pluggy.HookspecMarker("abstractruntime")


@hookspec
def abstractruntime_driver_poll(runtime: "Runtime", registry: Any) -> None:
    """Work. A driver -- the scheduler's poll, a PostgreSQL worker's cycle -- is about to look for runnable runs:
    create the runs that are due now (the ``schedules`` plugin starts the runs of due schedules). ``registry`` is
    the driver's workflow registry (None: use ``runtime.workflow_registry``). Called on every poll, so cheap when
    there is nothing to do; an exception is recorded as a poll error by the driver, which goes on.

    :param runtime: the runtime the driver drives.
    :param registry: the driver's workflow registry, or None.

    .. versionadded:: 0.5
    """
