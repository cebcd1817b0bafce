"""Host loops: will what an async effect handler returns be awaited on an asyncio host's event loop?

A sync ``Runtime`` finishes an async handler's awaitable on a private event loop (``asyncio.run``, one per call);
an ``AsyncRuntime`` awaits it on the host's loop (docs/asyncio.md). A handler that can work either way -- the
AbstractCore ``LLM_CALL`` handler uses the provider's ``agenerate`` on the host's loop and ``generate`` otherwise --
asks :func:`on_host_loop`: objects bound to a loop (an ``httpx.AsyncClient`` a provider caches) must only be used
on that one loop. The runtime that awaits on a host loop says so with :func:`set_host_loop`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from abstractruntime import StashKey

if TYPE_CHECKING:  # asyncio costs ~18 ms of start-up: annotations only (issue 23)
    import asyncio

#: ``probe() -> the loop this runtime's awaiter awaits on now``, None when it would use a private loop
_HOST_LOOP = StashKey["Callable[[], Optional[asyncio.AbstractEventLoop]]"]()


def set_host_loop(runtime: Any, probe: Callable[[], Optional[asyncio.AbstractEventLoop]]) -> None:
    """``runtime.awaiter`` awaits on the loop ``probe()`` returns (None: on a private loop, as a sync Runtime)."""
    runtime.stash[_HOST_LOOP] = probe


def host_loop(runtime: Any) -> Optional[asyncio.AbstractEventLoop]:
    """The event loop an async handler called now (on this thread) would be awaited on; None for a private loop."""
    stash = getattr(runtime, "stash", None)
    probe = stash.get(_HOST_LOOP) if stash is not None else None
    return probe() if probe is not None else None


def on_host_loop(runtime: Any) -> bool:
    """Would an awaitable a handler returns now be awaited on the host's (long-lived) event loop?"""
    return host_loop(runtime) is not None


__all__ = ["set_host_loop", "host_loop", "on_host_loop"]
