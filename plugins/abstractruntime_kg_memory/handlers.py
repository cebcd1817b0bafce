"""The handlers of MEMORY_KG_ASSERT / MEMORY_KG_QUERY / MEMORY_KG_RESOLVE, two ways:

* :func:`build_memory_kg_effect_handlers` -- the reference's host API: handlers ``fn(run, effect,
  default_next_node)`` over a store the host built, for ``Runtime(effect_handlers=...)`` or
  ``create_local_runtime(extra_effect_handlers=...)``;
* :func:`plugin_handler` -- what the plugin registers: the store comes from the runtime's configuration
  (:func:`~.store.kg_store_for`) and ids derive from the step's idempotency key.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from abstractruntime import EffectOutcome, EffectType
from abstractruntime.errors import InvalidTypeError

from .assertions import kg_assert
from .errors import KgStoreTypeError
from .kg_call import KgCall, payload_of, step_key
from .query import kg_query
from .resolve import kg_resolve
from .store import kg_store_for
from .terms import abstractmemory_types

Handler = Callable[[KgCall], EffectOutcome]
HANDLERS: Dict[EffectType, Handler] = {
    EffectType.MEMORY_KG_ASSERT: kg_assert,
    EffectType.MEMORY_KG_QUERY: kg_query,
    EffectType.MEMORY_KG_RESOLVE: kg_resolve,
}


def _check_store(store: Any) -> None:
    missing = [m for m in ("add", "query") if not callable(getattr(store, m, None))]
    if missing:
        raise KgStoreTypeError(
            f"The KG store must have callable add(list) and query(TripleQuery) (an abstractmemory triple store such "
            f"as SQLiteTripleStore); {type(store).__name__} lacks {', '.join(missing)}")


def build_memory_kg_effect_handlers(*, store: Any, run_store: Any,
                                    now_iso: Callable[[], str]) -> Dict[EffectType, Callable[..., Any]]:
    """``{MEMORY_KG_ASSERT, MEMORY_KG_QUERY, MEMORY_KG_RESOLVE: handler(run, effect, default_next_node)}`` over
    ``store`` (an ``abstractmemory`` triple store). Raises ``RuntimeError`` (:class:`KgMemoryUnavailableError`)
    without ``abstractmemory`` and ``TypeError`` (:class:`KgStoreTypeError`) for a store without
    ``add``/``query``. ``now_iso()`` stamps ``observed_at``."""
    abstractmemory_types("build_memory_kg_effect_handlers")
    _check_store(store)
    if not callable(now_iso):
        raise InvalidTypeError(f"now_iso must be a function returning an ISO timestamp, got {now_iso!r}")
    clock = now_iso

    def bind(handler: Handler) -> Callable[..., EffectOutcome]:
        def handle(run: Any, effect: Any, default_next_node: Optional[str] = None) -> EffectOutcome:
            return handler(KgCall(run=run, payload=payload_of(effect), store=store, run_store=run_store,
                                  now_iso=clock, key=step_key(run)))

        handle.__name__ = handle.__qualname__ = f"handle_{handler.__name__}"
        return handle

    return {etype: bind(handler) for etype, handler in HANDLERS.items()}


def plugin_handler(effect_type: EffectType) -> Callable[[Any], EffectOutcome]:
    """The handler the plugin registers for ``effect_type`` (an :class:`~abstractruntime.EffectCall` handler)."""
    handler = HANDLERS[effect_type]

    def handle(call: Any) -> EffectOutcome:
        store = kg_store_for(call.runtime)
        return handler(KgCall(run=call.run, payload=payload_of(call.effect), store=store,
                              run_store=call.runtime.run_store, now_iso=call.now_iso, key=call.idempotency_key))

    handle.__name__ = handle.__qualname__ = handler.__name__
    return handle


__all__ = ["build_memory_kg_effect_handlers", "plugin_handler", "HANDLERS"]
