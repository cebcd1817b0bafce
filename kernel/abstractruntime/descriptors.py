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
    """One execution of an effect, as an effect handler sees it.

    ``idempotency_key`` is stable across a crash-and-retry of the same step and differs between loop iterations;
    pass it to the outside world (an API's idempotency header) so it can de-duplicate.
    """

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
    """An effect handler contributed by a plugin.

    ``side_effects=True`` (the default, safe for anything that talks to the outside world) makes the kernel
    commit a ``started`` reservation to the ledger before the handler runs, so a crash in the middle is
    visible and the step is never recorded twice. Handlers that only compute a wait or a value from the run
    (the wait effects) set it to False: their whole step is then one commit.
    """

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
    """A store backend contributed by a plugin. ``factory(location)`` returns a ``StoreBackend``.

    ``default_url()``, if given, makes this the store a runtime opens when configuration names none (one
    installed store may offer it; the builtin ``lmdb`` does)."""

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
    """A subcommand of the ``abstractruntime`` CLI.

    ``configure(parser)`` adds arguments to an ``argparse`` sub-parser; ``run(args, runtime) -> int`` executes it
    with a runtime built from ``--store`` / the configuration and returns the exit code. ``store`` says what the
    command does with the store: ``"write"``, ``"read"`` (opened ``read_only``: nothing is created) or ``"none"``.
    """

    name: str
    help: str
    configure: Callable[[Any], None]
    run: Callable[[Any, "Any"], int]
    store: str = "write"


def legacy_handler(fn: Callable[..., EffectOutcome]) -> EffectHandlerFn:
    """Adapt a reference-style handler ``fn(run, effect, default_next_node)`` or ``fn(run, effect)``.

    The arity is read from the signature once (a handler with three or more parameters, or ``*args``, gets three
    arguments); the handler is never called twice to probe.
    """
    import inspect

    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature: assume the full form
        return lambda call: fn(call.run, call.effect, call.default_next_node)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in params):
        return lambda call: fn(call.run, call.effect, call.default_next_node)
    return lambda call: fn(call.run, call.effect)
