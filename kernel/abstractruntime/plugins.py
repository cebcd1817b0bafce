"""Plugin loading and the typed facade through which the kernel calls hooks.

Each ``Runtime`` builds its own ``pluggy.PluginManager`` (there is no module-level manager), so two runtimes with
different plugin sets can live in one process. Plugins are found through the ``abstractruntime`` entry-point
group -- the builtin plugins are declared in our own ``pyproject.toml`` exactly as a third-party plugin declares
itself.

Loading policy:

* a plugin shipped in the ``abstractruntime`` distribution is essential: if it fails to load, building the
  runtime fails;
* a third-party plugin that fails to import or register is recorded (``Runtime.plugins()``) and logged, and the
  runtime starts without it -- unless ``strict`` is set, then it raises :class:`PluginError`;
* ``block`` names are never loaded; with an ``allow`` list only the listed third-party plugins are loaded;
  ``autoload=False`` loads only the builtin plugins and the plugin objects passed explicitly.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import pluggy
from .logs import get_logger
from attrs import frozen

from . import hookspecs
from .descriptors import (
    CliCommandDescriptor,
    EffectCall,
    EffectHandlerDescriptor,
    RuntimeMethodDescriptor,
    StoreDescriptor,
)
from .errors import ConfigurationError, DuplicateProviderError, PluginError
from .models import EffectOutcome, RunState, RunStatus, StepPlan, StepRecord
from .settings import PluginSettings

log = get_logger("abstractruntime.plugins")

ENTRY_POINT_GROUP = hookspecs.PROJECT
OWN_DISTRIBUTION = "abstractruntime"


@frozen
class PluginInfo:
    """What ``Runtime.plugins()`` reports for each plugin."""

    name: str
    distribution: Optional[str]
    version: Optional[str]
    status: str  # "loaded" | "failed" | "blocked" | "not-allowed" | "not-autoloaded"
    error: Optional[str] = None
    builtin: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "builtin": self.builtin,
        }


def _normalise_dist(name: Optional[str]) -> str:
    return (name or "").replace("_", "-").replace(".", "-").lower()


@functools.lru_cache(maxsize=1)
def _entry_points() -> Tuple[metadata.EntryPoint, ...]:
    # Reading installed metadata costs milliseconds; the set of installed distributions does not change while a
    # process runs (except under `pip install` in-process, see refresh_entry_points()).
    return tuple(sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name))


def refresh_entry_points() -> None:
    """Forget the cached entry-point list (after installing a plugin in a running process)."""
    _entry_points.cache_clear()


def build_plugin_manager(
    settings: PluginSettings, extra_plugins: Sequence[Any] = ()
) -> Tuple[pluggy.PluginManager, List[PluginInfo]]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: List[PluginInfo] = []
    blocked = set(settings.block)
    allowed = set(settings.allow) if settings.allow is not None else None
    for ep in _entry_points():
        dist = getattr(ep, "dist", None)
        dist_name = getattr(dist, "name", None)
        version = getattr(dist, "version", None)
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
        if pm.has_plugin(ep.name):
            error = f"another plugin is already registered under the name {ep.name!r}"
            if builtin or settings.strict:
                raise PluginError(f"Plugin {ep.name!r} ({dist_name}): {error}")
            infos.append(info("failed", error))
            log.warning("plugin_failed", plugin=ep.name, distribution=dist_name, error=error)
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken third-party plugin must not take the host down
            error = f"{type(exc).__name__}: {exc}"
            if builtin or settings.strict:
                raise PluginError(
                    f"Plugin {ep.name!r} from distribution {dist_name} {version} failed to load: {error}"
                ) from exc
            infos.append(info("failed", error))
            log.warning("plugin_failed", plugin=ep.name, distribution=dist_name, version=version, error=error)
            continue
        infos.append(info("loaded"))
    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__module__}.{type(plugin).__qualname__}"
        if pm.is_registered(plugin):
            continue
        pm.register(plugin, name=name if not pm.has_plugin(name) else None)
        infos.append(PluginInfo(pm.get_name(plugin) or name, None, None, "loaded", None, False))
    return pm, infos


class Hooks:
    """The kernel's typed, keyword-only view of the hooks."""

    def __init__(
        self, pm: pluggy.PluginManager, *, strict: bool = False, infos: Optional[List[PluginInfo]] = None
    ) -> None:
        self._pm = pm
        self._hook = pm.hook
        self._strict = strict
        #: plugin infos, updated when a third-party plugin fails in a collector hook
        self.infos: List[PluginInfo] = infos if infos is not None else []

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        return self._pm

    # --- collectors -------------------------------------------------------------------------------------------
    def _collect(self, hook_name: str) -> List[Tuple[str, Any]]:
        out: List[Tuple[str, Any]] = []
        builtin = {i.name for i in self.infos if i.builtin}
        for impl in getattr(self._hook, hook_name).get_hookimpls():
            try:
                result = list(impl.function() or ())
            except Exception as exc:
                error = f"{hook_name} raised {type(exc).__name__}: {exc}"
                if impl.plugin_name in builtin or self._strict:
                    raise PluginError(f"Plugin {impl.plugin_name!r}: {error}") from exc
                self._disable(impl.plugin_name, error)
                continue
            for item in result:
                out.append((impl.plugin_name, item))
        return out

    def _disable(self, name: str, error: str) -> None:
        """A third-party plugin failed to register: record it, unregister it, keep going."""
        log.warning("plugin_failed", plugin=name, error=error)
        if self._pm.has_plugin(name):
            self._pm.unregister(name=name)
        for i, info in enumerate(self.infos):
            if info.name == name:
                self.infos[i] = PluginInfo(info.name, info.distribution, info.version, "failed", error, info.builtin)

    def effect_handlers(self) -> List[Tuple[str, EffectHandlerDescriptor]]:
        items = self._collect("abstractruntime_register_effect_handlers")
        for provider, item in items:
            if not isinstance(item, EffectHandlerDescriptor):
                raise PluginError(
                    f"Plugin {provider!r} returned {type(item).__name__} from abstractruntime_register_effect_handlers;"
                    f" expected EffectHandlerDescriptor"
                )
        return items

    def stores(self) -> List[Tuple[str, StoreDescriptor]]:
        items = self._collect("abstractruntime_register_stores")
        for provider, item in items:
            if not isinstance(item, StoreDescriptor):
                raise PluginError(
                    f"Plugin {provider!r} returned {type(item).__name__} from abstractruntime_register_stores;"
                    f" expected StoreDescriptor"
                )
        return items

    def runtime_methods(self) -> List[Tuple[str, RuntimeMethodDescriptor]]:
        return self._typed("abstractruntime_register_runtime_methods", RuntimeMethodDescriptor)

    def cli_commands(self) -> List[Tuple[str, CliCommandDescriptor]]:
        return self._typed("abstractruntime_register_cli_commands", CliCommandDescriptor)

    def _typed(self, hook_name: str, cls: type) -> List[Tuple[str, Any]]:
        items = self._collect(hook_name)
        for provider, item in items:
            if not isinstance(item, cls):
                raise PluginError(
                    f"Plugin {provider!r} returned {type(item).__name__} from {hook_name}; expected {cls.__name__}"
                )
        return items

    def fault_point(self, *, point: str, run_id: str) -> None:
        hook = self._hook.abstractruntime_fault_point
        if hook.get_hookimpls():
            hook(point=point, run_id=run_id)

    def poll_wait(self, *, runtime: Any, run: RunState) -> Optional[Dict[str, Any]]:
        hook = self._hook.abstractruntime_poll_wait
        if not hook.get_hookimpls():
            return None
        return hook(runtime=runtime, run=run)

    def prepare_ledger_records(self, *, runtime: Any, run_id: str, records: List[StepRecord]) -> None:
        hook = self._hook.abstractruntime_prepare_ledger_records
        if hook.get_hookimpls():
            hook(runtime=runtime, run_id=run_id, records=records)

    # --- work -------------------------------------------------------------------------------------------------
    def execute_effect(self, *, call: EffectCall) -> Optional[EffectOutcome]:
        return self._hook.abstractruntime_execute_effect(call=call)

    def prepare_resume_payload(
        self, *, run: RunState, wait: Any, payload: Dict[str, Any], runtime: Any
    ) -> Dict[str, Any]:
        hook = self._hook.abstractruntime_prepare_resume_payload
        if not hook.get_hookimpls():
            return payload
        replaced = hook(run=run, wait=wait, payload=payload, runtime=runtime)
        return payload if replaced is None else replaced

    def runtime_created(self, *, runtime: Any) -> None:
        """Exceptions propagate: a plugin refuses the runtime's configuration."""
        self._hook.abstractruntime_runtime_created(runtime=runtime)

    # --- observers --------------------------------------------------------------------------------------------
    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        hook = getattr(self._hook, hook_name)
        if not hook.get_hookimpls():
            return
        try:
            hook(**kwargs)
        except Exception as exc:
            if self._strict:
                raise
            log.warning("observer_hook_failed", hook=hook_name, error=f"{type(exc).__name__}: {exc}")

    def before_step(self, *, run: RunState, node_id: str) -> None:
        self._notify("abstractruntime_before_step", run=run, node_id=node_id)

    def after_step(
        self, *, run: RunState, node_id: str, plan: Optional[StepPlan], records: Sequence[StepRecord]
    ) -> None:
        self._notify("abstractruntime_after_step", run=run, node_id=node_id, plan=plan, records=records)

    def step_error(self, *, run: RunState, node_id: str, error: BaseException) -> None:
        self._notify("abstractruntime_step_error", run=run, node_id=node_id, error=error)

    def run_status_changed(self, *, run: RunState, previous_status: RunStatus, runtime: Any) -> None:
        self._notify("abstractruntime_run_status_changed", run=run, previous_status=previous_status, runtime=runtime)

    def ledger_appended(self, *, run_id: str, records: Sequence[StepRecord]) -> None:
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


def select_store(provided: Iterable[Tuple[str, StoreDescriptor]], scheme: str) -> StoreDescriptor:
    """The store descriptor for a URL scheme or store name; unknown -> :class:`UnknownStoreError`."""
    from .errors import UnknownStoreError

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
