"""Plugin loading (one ``pluggy.PluginManager`` per ``Runtime``, plugins from the ``abstractruntime`` entry-point
group) and :class:`Hooks`, the typed facade through which the kernel calls hooks. The loading policy (builtin,
third-party, strict, block, allow, autoload, requirements): docs/architecture.md#plugin-loading, docs/hooks.md."""

from __future__ import annotations

import functools
import inspect
import operator
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import attrs
import pluggy
from attrs import frozen

from . import hookspecs
from .descriptors import (CliCommandDescriptor, EffectCall, EffectHandlerDescriptor, RuntimeMethodDescriptor,
    StoreDescriptor)
from .errors import ConfigurationError, DuplicateProviderError, InvalidTypeError, PluginError, UnknownStoreError
from .logs import get_logger
from .models import EffectOutcome, RunState, RunStatus, StepPlan, StepRecord
from .settings import PluginSettings, parse_store_url
from .storage.base import StoreBackend

log = get_logger("abstractruntime.plugins")

ENTRY_POINT_GROUP = hookspecs.PROJECT
OWN_DISTRIBUTION = "abstractruntime"
#: a plugin's module-level tuple of the plugin names it needs loaded, e.g. ``abstractruntime_requires = ("events",)``
REQUIRES_ATTRIBUTE = "abstractruntime_requires"


@frozen
class PluginInfo:
    """What ``Runtime.plugins()`` reports for each plugin."""

    name: str
    distribution: Optional[str]
    version: Optional[str]
    status: str  # "loaded" | "failed" | "blocked" | "not-allowed" | "not-autoloaded"
    error: Optional[str] = None
    builtin: bool = False
    explicit: bool = False  # passed to ``Runtime(plugins=[...])`` by the host
    requires: Tuple[str, ...] = ()  # the plugins it declares it needs (``abstractruntime_requires``)

    def to_dict(self) -> Dict[str, Any]:
        return attrs.asdict(self)


def _normalise_dist(name: Optional[str]) -> str:
    return (name or "").replace("_", "-").replace(".", "-").lower()


@functools.lru_cache(maxsize=1)
def _entry_points() -> Tuple[Tuple[Any, Optional[str], Optional[str]], ...]:
    """``(entry point, distribution, version)``; each distribution's metadata parsed once (refresh_entry_points())."""
    from importlib import metadata

    eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    dists = {id(d): d for d in (getattr(ep, "dist", None) for ep in eps) if d is not None}
    meta = {key: (m["Name"], m["Version"]) for key, d in dists.items() for m in (d.metadata,)}
    return tuple((ep, *meta.get(id(getattr(ep, "dist", None)), (None, None))) for ep in eps)


def refresh_entry_points() -> None:
    """Forget the cached entry-point list (after installing a plugin in a running process)."""
    _entry_points.cache_clear()


class _PluginManager(pluggy.PluginManager):
    """Any routine of a plugin named ``abstractruntime_*`` is a hook implementation, marked or not (as pytest treats
    ``pytest_*``), so a misspelled hook name reaches :func:`_check_pending`; ``generation`` counts (un)registrations."""

    generation = 0

    def register(self, plugin: Any, name: Optional[str] = None) -> Optional[str]:
        try:
            return super().register(plugin, name)
        finally:  # after: what a concurrent call cached meanwhile is looked up again
            self.generation += 1

    def unregister(self, plugin: Any = None, name: Optional[str] = None) -> Any:
        try:
            return super().unregister(plugin, name)
        finally:
            self.generation += 1

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        if not name.startswith(hookspecs.PREFIX) or name == REQUIRES_ATTRIBUTE:
            return None  # a hook implementation is named after its hook: other attributes are not even read
        opts = super().parse_hookimpl_opts(plugin, name)
        return {} if opts is None and inspect.isroutine(getattr(plugin, name, None)) else opts


def build_plugin_manager(
    settings: PluginSettings, extra_plugins: Sequence[Any] = ()
) -> Tuple[pluggy.PluginManager, List[PluginInfo]]:
    """A plugin manager with the entry-point plugins the settings allow and ``extra_plugins``, checked: every
    ``abstractruntime_*`` implementation matches a hookspec and every required plugin is loaded."""
    pm = _PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.hook.abstractruntime_add_hookspecs.call_historic(kwargs={"pluginmanager": pm})
    infos: List[PluginInfo] = []
    blocked = set(settings.block)
    allowed = set(settings.allow) if settings.allow is not None else None
    for ep, dist_name, version in _entry_points():
        builtin = _normalise_dist(dist_name) == OWN_DISTRIBUTION

        def info(status: str, error: Optional[str] = None) -> PluginInfo:
            return PluginInfo(ep.name, dist_name, version, status, error, builtin)  # noqa: B023

        if ep.name in blocked:
            infos.append(info("blocked"))
            continue
        if not builtin:
            if allowed is not None and ep.name not in allowed:
                infos.append(info("not-allowed"))
                continue
            if not settings.autoload:
                infos.append(info("not-autoloaded"))
                continue
        try:
            if pm.has_plugin(ep.name):
                raise PluginError(f"another plugin is already registered under the name {ep.name!r}")
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken third-party plugin must not take the host down
            error = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            if builtin or settings.strict:
                raise PluginError(
                    f"Plugin {ep.name!r} from distribution {dist_name} {version} failed to load: {error}"
                ) from exc
            infos.append(info("failed", error))
            log.warning("plugin_failed", plugin=ep.name, distribution=dist_name, version=version, error=error)
            continue
        infos.append(attrs.evolve(info("loaded"), requires=tuple(getattr(plugin, REQUIRES_ATTRIBUTE, ()))))
    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__module__}.{type(plugin).__qualname__}"
        if pm.is_registered(plugin):
            continue
        pm.register(plugin, name=name if not pm.has_plugin(name) else None)
        infos.append(PluginInfo(pm.get_name(plugin) or name, None, None, "loaded", None, False, explicit=True,
                                requires=tuple(getattr(plugin, REQUIRES_ATTRIBUTE, ()))))
    hooks = Hooks(pm, strict=settings.strict, infos=infos)
    _check_requirements(hooks, blocked)
    _check_pending(hooks)
    return pm, hooks.infos


def _check_requirements(hooks: "Hooks", blocked: Set[str]) -> None:
    """Every loaded plugin's ``abstractruntime_requires`` names loaded plugins; else the requiring plugin fails."""
    changed = True
    while changed:  # disabling one plugin can break another that requires it
        changed = False
        status = {i.name: i.status for i in hooks.infos}
        for info in list(hooks.infos):
            missing = [r for r in info.requires if status.get(r) != "loaded"]
            if info.status != "loaded" or not missing:
                continue
            required = missing[0]
            why = ("is blocked ([abstractruntime.plugins] block)" if required in blocked
                   else "is not installed" if required not in status else f"is {status[required]}")
            hooks.fail(info.name, f"requires plugin {required!r}, which {why}; unblock or install {required!r}, "
                                  f"or block {info.name!r} too")
            changed = True
            break


def _check_pending(hooks: "Hooks") -> None:
    """pluggy's ``check_pending``, applied with the loading policy: an ``abstractruntime_*`` implementation that
    matches no hookspec (a misspelled hook) is a load failure of the plugin that has it."""
    pm = hooks.plugin_manager
    for name, caller in list(vars(pm.hook).items()):
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if not impl.optionalhook and pm.is_registered(impl.plugin):
                hooks.fail(impl.plugin_name, f"{name} is not a hook of AbstractRuntime (a misspelled hook name?); "
                                             f"the hooks are listed in docs/hooks.md")
    pm.check_pending()


def _getter(names: Sequence[str]) -> Callable[[Dict[str, Any]], Tuple[Any, ...]]:
    """An implementation's arguments, by name, from a call's keywords (two or more: one C call)."""
    if len(names) > 1:
        return operator.itemgetter(*names)
    return (lambda kwargs, name=names[0]: (kwargs[name],)) if names else (lambda kwargs: ())


class Hooks:
    """The kernel's typed, keyword-only view of the hooks."""

    def __init__(
        self, pm: pluggy.PluginManager, *, strict: bool = False, infos: Optional[List[PluginInfo]] = None
    ) -> None:
        self._pm = pm
        self._hook = pm.hook
        self._strict = strict
        self.infos: List[PluginInfo] = infos if infos is not None else []
        self._observers: Dict[str, Any] = {}
        self._generation = -1

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        return self._pm

    # --- collectors -------------------------------------------------------------------------------------------
    def collect(self, hook_name: str, cls: type) -> List[Tuple[str, Any]]:
        """``(plugin name, item)`` for every item of the collector ``hook_name``, each plugin called on its own: one
        that raises or returns something other than ``cls`` instances fails under :meth:`fail`."""
        hook = getattr(self._hook, hook_name, None)
        if hook is None:
            return []
        impls = [i for i in hook.get_hookimpls() if not (i.hookwrapper or i.wrapper)]
        out: List[Tuple[str, Any]] = []
        for impl in impls:
            others = [i.plugin for i in impls if i is not impl]
            try:
                results = self._pm.subset_hook_caller(hook_name, remove_plugins=others)()
                items = [item for result in results for item in (result or ())]
                bad = next((item for item in items if not isinstance(item, cls)), None)
                if bad is not None:
                    raise InvalidTypeError(f"returned {type(bad).__name__}, expected {cls.__name__}")
            except Exception as exc:
                self.fail(impl.plugin_name, f"{hook_name}: {type(exc).__name__}: {exc}", exc)
                continue
            out.extend((impl.plugin_name, item) for item in items)
        return out

    def fail(self, name: str, error: str, cause: Optional[BaseException] = None) -> None:
        """The one failure policy: :class:`PluginError` for a builtin or explicit plugin (any in strict mode), else the
        plugin is unregistered, reported as ``failed`` and logged."""
        info = next((i for i in self.infos if i.name == name), None)
        if info is None or info.builtin or info.explicit or self._strict:
            raise PluginError(f"Plugin {name!r}: {error}") from cause
        log.warning("plugin_failed", plugin=name, error=error)
        if self._pm.has_plugin(name):
            self._pm.unregister(name=name)
        self.infos[self.infos.index(info)] = attrs.evolve(info, status="failed", error=error)

    def effect_handlers(self) -> List[Tuple[str, EffectHandlerDescriptor]]:
        return self.collect("abstractruntime_register_effect_handlers", EffectHandlerDescriptor)

    def stores(self) -> List[Tuple[str, StoreDescriptor]]:
        return self.collect("abstractruntime_register_stores", StoreDescriptor)

    def runtime_methods(self) -> List[Tuple[str, RuntimeMethodDescriptor]]:
        return self.collect("abstractruntime_register_runtime_methods", RuntimeMethodDescriptor)

    def cli_commands(self) -> List[Tuple[str, CliCommandDescriptor]]:
        return self.collect("abstractruntime_register_cli_commands", CliCommandDescriptor)

    def _call(self, hook_name: str, default: Any = None, **kwargs: Any) -> Any:
        """Call a work hook; ``default`` when no plugin implements it. While none of its wrappers is active (a
        wrapper's function may carry ``active``, called with the hook's arguments: does it wrap this call?), the
        other implementations are called as pluggy would, without its dispatch (docs/hooks.md, ``active``)."""
        plan = self._observers.get((hook_name,)) if self._pm.generation == self._generation else None
        if plan is None:
            hook = getattr(self._hook, hook_name)
            impls = [(i.hookwrapper or i.wrapper, i) for i in hook.get_hookimpls()]
            plan = self._cache()[(hook_name,)] = (
                hook, bool(hook.spec and hook.spec.opts.get("firstresult")),
                tuple(getattr(i.function, "active", None) for wrapper, i in impls if wrapper),
                tuple((i.function, _getter(i.argnames)) for wrapper, i in reversed(impls) if not wrapper))
        hook, first, gates, plain = plan
        for active in gates:
            if active is None or active(**kwargs):
                return hook(**kwargs)
        if not plain:
            return default
        results = []
        for function, args in plain:
            result = function(*args(kwargs))
            if result is not None:
                if first:
                    return result
                results.append(result)
        return None if first else results

    def fault_point(self, *, point: str, run_id: str) -> None:  # twice per commit: nobody injecting costs a lookup
        if self._observers.get("abstractruntime_fault_point") != () or self._pm.generation != self._generation:
            if self._observer_calls("abstractruntime_fault_point") != ():  # (its exceptions propagate: no _notify)
                self._hook.abstractruntime_fault_point(point=point, run_id=run_id)

    def poll_wait(self, *, runtime: Any, run: RunState) -> Optional[Dict[str, Any]]:
        return self._call("abstractruntime_poll_wait", runtime=runtime, run=run)

    def prepare_ledger_records(self, *, runtime: Any, run_id: str, records: List[StepRecord]) -> List[Any]:
        """The commit preconditions the implementations return (see the hookspec; None results are left out)."""
        return self._call("abstractruntime_prepare_ledger_records", [], runtime=runtime, run_id=run_id,
                          records=records)

    def prepare_new_run(self, *, runtime: Any, run: RunState) -> None:
        self._call("abstractruntime_prepare_new_run", runtime=runtime, run=run)

    # --- work -------------------------------------------------------------------------------------------------
    def execute_effect(self, *, call: EffectCall) -> Optional[EffectOutcome]:
        return self._call("abstractruntime_execute_effect", call=call)

    def api_call(self, runtime: Any, name: str, run_id: Optional[str], call: Callable[[], Any]) -> Any:
        return self._call("abstractruntime_api_call", runtime=runtime, name=name, run_id=run_id, call=call)

    def prepare_resume_payload(self, *, run: RunState, wait: Any, payload: Dict[str, Any],
                               runtime: Any) -> Dict[str, Any]:
        replaced = self._call("abstractruntime_prepare_resume_payload", run=run, wait=wait, payload=payload,
                              runtime=runtime)
        return payload if replaced is None else replaced

    def runtime_created(self, *, runtime: Any) -> None:
        """Exceptions propagate: a plugin refuses the runtime's configuration."""
        self._hook.abstractruntime_runtime_created(runtime=runtime)

    # --- observers --------------------------------------------------------------------------------------------
    def _cache(self) -> Dict[str, Any]:
        """What the per-step and per-call dispatch looked up, kept until a plugin is (un)registered."""
        if self._pm.generation != self._generation:
            self._observers, self._generation = {}, self._pm.generation
        return self._observers

    def _observer_calls(self, hook_name: str) -> Any:
        """``(function, its arguments' getter, plugin)`` per implementation in pluggy's order, kept until a plugin is
        (un)registered (these run at every step: cheaper than pluggy's dispatch); None while a wrapper implements it."""
        calls = self._observers.get(hook_name, self) if self._pm.generation == self._generation else self
        if calls is self:  # not looked up since the last change
            impls = getattr(self._hook, hook_name).get_hookimpls()
            calls = self._cache()[hook_name] = None if any(i.hookwrapper or i.wrapper for i in impls) else tuple(
                (i.function, _getter(i.argnames), i.plugin_name) for i in reversed(impls))
        return calls

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call every observer; one that raises is logged (``strict``: raised) and the others still run."""
        calls = self._observer_calls(hook_name)
        if not calls:
            if calls is not None:
                return  # no observer
            calls = ((functools.partial(getattr(self._hook, hook_name), **kwargs), _getter(()), None),)
        for function, args, plugin in calls:
            try:
                function(*args(kwargs))
            except Exception as exc:
                if self._strict:
                    raise
                log.warning("observer_hook_failed", hook=hook_name, plugin=plugin,
                            error=f"{type(exc).__name__}: {exc}")

    def quiet_steps(self) -> Optional[int]:
        """The plugin manager's generation if no plugin observes steps (before_step, after_step), else None: the tick
        loop asks once a tick and calls neither while the generation is unchanged (docs/hooks.md)."""
        before, after = (self._observer_calls(f"abstractruntime_{when}_step") for when in ("before", "after"))
        return self._pm.generation if before == after == () else None

    def before_step(self, *, run: RunState, node_id: str) -> None:  # at every step: nobody observing costs a lookup
        if self._observers.get("abstractruntime_before_step") != () or self._pm.generation != self._generation:
            self._notify("abstractruntime_before_step", run=run, node_id=node_id)

    def after_step(self, *, run: RunState, node_id: str, plan: Optional[StepPlan],
                   records: Sequence[StepRecord]) -> None:
        if self._observers.get("abstractruntime_after_step") != () or self._pm.generation != self._generation:
            self._notify("abstractruntime_after_step", run=run, node_id=node_id, plan=plan, records=records)

    def step_error(self, *, run: RunState, node_id: str, error: BaseException) -> None:
        self._notify("abstractruntime_step_error", run=run, node_id=node_id, error=error)

    def run_status_changed(self, *, run: RunState, previous_status: RunStatus, runtime: Any) -> None:
        self._notify("abstractruntime_run_status_changed", run=run, previous_status=previous_status, runtime=runtime)

    def ledger_appended(self, *, run_id: str, records: Sequence[StepRecord]) -> None:
        if self._observers.get("abstractruntime_ledger_appended") != () or self._pm.generation != self._generation:
            self._notify("abstractruntime_ledger_appended", run_id=run_id, records=records)


def select_effect_handlers(
    provided: Iterable[Tuple[str, EffectHandlerDescriptor]], choices: Mapping[str, str]
) -> Dict[str, Tuple[str, EffectHandlerDescriptor]]:
    """One descriptor per effect type; duplicates must be resolved by ``choices`` (effect type -> plugin name)."""
    by_type: Dict[str, List[Tuple[str, EffectHandlerDescriptor]]] = {}
    for provider, desc in provided:
        by_type.setdefault(desc.effect_type, []).append((provider, desc))
    for effect_type, provider in choices.items():
        candidates = by_type.get(effect_type)
        if not candidates or provider not in [p for p, _ in candidates]:
            have = ", ".join(p for p, _ in candidates or []) or "no installed plugin"
            raise ConfigurationError(
                f"Configuration chooses plugin {provider!r} for effect type {effect_type!r}, "
                f"but it is provided by: {have}"
            )
    out: Dict[str, Tuple[str, EffectHandlerDescriptor]] = {}
    for effect_type, candidates in by_type.items():
        if effect_type in choices:
            out[effect_type] = next(c for c in candidates if c[0] == choices[effect_type])
        elif len(candidates) > 1:
            raise DuplicateProviderError(
                kind="effect handler",
                name=effect_type,
                providers=[p for p, _ in candidates],
                hint=f"Choose one in configuration: [abstractruntime.effects] {effect_type} = \"<plugin name>\".",
            )
        else:
            out[effect_type] = candidates[0]
    return out


def open_store(provided: Sequence[Tuple[str, StoreDescriptor]], url: Optional[str],
               options: Mapping[str, Any]) -> Any:
    """Open the store ``url`` names (``options`` under its query parameters) with the plugin that provides its
    scheme; without a URL, the one store a plugin offers as the default (``StoreDescriptor.default_url``)."""
    names = ", ".join(sorted({d.name for _p, d in provided})) or "(none installed)"
    if url is None:
        defaults = [d for _p, d in provided if d.default_url is not None]
        if len(defaults) != 1:
            raise ConfigurationError(
                f"No store is configured and {'no' if not defaults else 'more than one'} installed store offers a "
                f"default; configure one, e.g. Runtime.from_config({{'store': 'memory://'}}) or ABSTRACTRUNTIME_STORE "
                f"(available stores: {names})")
        url = defaults[0].default_url()  # type: ignore[misc]
    try:
        location = parse_store_url(url, options)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc}. Available stores: {names}") from None
    backend = select_store(provided, location.scheme).factory(location)
    if not isinstance(backend, StoreBackend):
        raise PluginError(f"The factory of store {location.scheme!r} returned {type(backend).__name__}, not a "
                          f"StoreBackend")
    return backend


def select_store(provided: Iterable[Tuple[str, StoreDescriptor]], scheme: str) -> StoreDescriptor:
    """The store descriptor for a URL scheme or store name; unknown -> :class:`UnknownStoreError`."""
    by_scheme: Dict[str, List[Tuple[str, StoreDescriptor]]] = {}
    names: List[str] = []
    for provider, desc in provided:
        names.append(desc.name)
        for s in desc.all_schemes():
            by_scheme.setdefault(s.lower(), []).append((provider, desc))
    for s, candidates in by_scheme.items():
        if len({id(d) for _, d in candidates}) > 1:
            raise DuplicateProviderError(
                kind="store", name=s, providers=[f"{p} ({d.name})" for p, d in candidates],
                hint="Block one of the plugins ([abstractruntime.plugins] block = [...]).",
            )
    match = by_scheme.get(scheme.lower())
    if not match:
        raise UnknownStoreError(scheme, names)
    return match[0][1]
