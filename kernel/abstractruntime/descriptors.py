"""Frozen descriptors returned by the collector hooks, and the objects passed to effect handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from attrs import field, frozen

from .models import Effect, EffectOutcome, RunState, effect_type_value

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import Runtime
    from .storage.base import StoreBackend


@frozen
class EffectCall:
    """One execution of an effect, as an effect handler sees it. ``idempotency_key`` is stable across a
    crash-and-retry of the same step and differs at a later step: pass it to the outside world."""

    run: RunState
    effect: Effect
    node_id: str
    default_next_node: Optional[str]
    idempotency_key: str
    attempt: int
    runtime: "Runtime"

    def now_iso(self) -> str:
        return self.runtime.context.now_iso()


EffectHandlerFn = Callable[[EffectCall], EffectOutcome]


@frozen
class EffectHandlerDescriptor:
    """An effect handler contributed by a plugin. ``side_effects=True`` (the default) commits a ``started``
    reservation before the handler runs; handlers that only compute from the run set False (docs/architecture.md)."""

    effect_type: str = field(converter=effect_type_value)
    handler: EffectHandlerFn
    description: str = ""
    side_effects: bool = True


@frozen
class StoreLocation:
    """A parsed store URL: ``lmdb:///var/lib/app/runs?sync=false`` -> scheme ``lmdb``, path, options."""

    url: str
    scheme: str
    path: str
    options: Dict[str, Any] = field(factory=dict)
    #: option ``read_only``: open what exists, create nothing (no store, lock or index file), refuse every write
    read_only: bool = False


@frozen
class StoreDescriptor:
    """A store backend contributed by a plugin: ``factory(location)`` returns a ``StoreBackend``; ``default_url()``
    makes it the store opened when configuration names none (one installed store may offer it)."""

    name: str
    factory: Callable[[StoreLocation], "StoreBackend"]
    schemes: Tuple[str, ...] = field(converter=tuple, factory=tuple)
    description: str = ""
    default_url: Optional[Callable[[], str]] = None

    def all_schemes(self) -> Tuple[str, ...]:
        return (self.name,) + tuple(s for s in self.schemes if s != self.name)


@frozen
class RuntimeMethodDescriptor:
    """A method a plugin adds to ``Runtime``: ``runtime.<name>(...)`` calls ``function(runtime, ...)``."""

    name: str
    function: Callable[..., Any]
    description: str = ""


@frozen
class CliCommandDescriptor:
    """A subcommand of the ``abstractruntime`` CLI: ``configure(parser)`` adds arguments, ``run(args, runtime) -> int``
    runs it; ``store`` is ``"write"``, ``"read"`` (opened ``read_only``) or ``"none"`` (docs/hooks.md)."""

    name: str
    help: str
    configure: Callable[[Any], None]
    run: Callable[[Any, "Any"], int]
    store: str = "write"


def legacy_handler(fn: Callable[..., EffectOutcome]) -> EffectHandlerFn:
    """Adapt a reference-style handler ``fn(run, effect, default_next_node)`` or ``fn(run, effect)``, choosing by its
    signature (three or more positional parameters, or ``*args``: three arguments), never by calling it."""
    import inspect

    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature: assume the full form
        return lambda call: fn(call.run, call.effect, call.default_next_node)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in params):
        return lambda call: fn(call.run, call.effect, call.default_next_node)
    return lambda call: fn(call.run, call.effect)
