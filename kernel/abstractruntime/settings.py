"""Configuration: which store, which plugins, which provider for an effect type, each plugin's options.

Sources, later ones winning: defaults < a TOML file (``ABSTRACTRUNTIME_CONFIG`` or a path given to
``Runtime.from_config``; keys under ``[abstractruntime]`` or at the top level) < environment variables < a dict
given to ``Runtime.from_config``. Keys: ``store``, ``store_options``, ``plugins`` (``autoload``, ``strict``,
``allow``, ``block``), ``effects`` (effect type -> plugin) and ``plugin_options`` (plugin -> table). The layout,
every environment variable and examples are in docs/configuration.md."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, Union

from attrs import field, frozen

from .descriptors import StoreLocation
from .errors import ConfigurationError

if TYPE_CHECKING:  # pathlib, urllib.parse and tomllib are imported where used: ``import abstractruntime`` stays light
    from pathlib import Path


def _names(value: Any) -> Tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)


def _optional_names(value: Any) -> Optional[Tuple[str, ...]]:
    return None if value is None else _names(value)


@frozen
class PluginSettings:
    autoload: bool = True
    strict: bool = False
    allow: Optional[Tuple[str, ...]] = field(default=None, converter=_optional_names)
    block: Tuple[str, ...] = field(default=(), converter=_names)


DURABILITIES = ("barrier", "step", "none")


def _choice(value: Any, what: str, choices: Tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigurationError(f"'{what}' must be one of {', '.join(choices)}; got {value!r}")
    return value


def _seconds(value: Any, what: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < float("inf") or isinstance(value, bool):
        raise ConfigurationError(f"'{what}' must be a number of seconds >= 0, got {value!r}")
    return seconds


def _store_url(store: Any) -> Optional[str]:
    if store is not None and (not isinstance(store, str) or not store.strip()):
        raise ConfigurationError(f"'store' must be a non-empty string such as 'lmdb:///path', got {store!r}")
    return store.strip() if isinstance(store, str) else None


@frozen
class Settings:
    store: Optional[str] = field(default=None, converter=_store_url)
    store_options: Dict[str, Any] = field(factory=dict)
    plugins: PluginSettings = field(factory=PluginSettings)
    effects: Dict[str, str] = field(factory=dict)
    #: per-plugin options, ``[abstractruntime.plugin_options.<plugin name>]``; each plugin documents its keys
    plugin_options: Dict[str, Dict[str, Any]] = field(factory=dict)
    #: when steps reach the disk: "barrier" (default), "step" or "none" (docs/durability.md)
    durability: str = field(default="barrier", converter=lambda v: _choice(v, "durability", DURABILITIES))
    #: an effect retry backoff longer than this (seconds) parks the run in a durable timer wait (docs/effects.md)
    inline_backoff_s: float = field(default=1.0, converter=lambda v: _seconds(v, "inline_backoff_s"))

    def options_for(self, plugin: str) -> Dict[str, Any]:
        return dict(self.plugin_options.get(plugin) or {})


_TOP_KEYS = {"store", "store_options", "plugins", "effects", "plugin_options", "durability", "inline_backoff_s"}
_PLUGIN_KEYS = {"autoload", "strict", "allow", "block"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def default_home() -> Path:
    """Where the runtime keeps its files by default (the default store plugin's store among them):
    ``$ABSTRACTRUNTIME_HOME``, else ``$XDG_DATA_HOME/abstractruntime``, else ``~/.local/share/abstractruntime``."""
    from pathlib import Path

    explicit = os.environ.get("ABSTRACTRUNTIME_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "abstractruntime"


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"{what} must be a boolean (true/false, 1/0), got {value!r}")


def _merge(base: Dict[str, Any], overlay: Mapping[str, Any], origin: str) -> Dict[str, Any]:
    unknown = set(overlay) - _TOP_KEYS
    if unknown:
        raise ConfigurationError(
            f"Unknown configuration key(s) {sorted(unknown)} in {origin}; valid keys: {sorted(_TOP_KEYS)}"
        )
    out = dict(base)
    for key, value in overlay.items():
        if key in ("store", "durability", "inline_backoff_s"):
            out[key] = value
            continue
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"'{key}' in {origin} must be a table/dict, got {type(value).__name__}")
        if key == "plugins" and set(value) - _PLUGIN_KEYS:
            raise ConfigurationError(f"Unknown plugins key(s) {sorted(set(value) - _PLUGIN_KEYS)} in {origin}; "
                                     f"valid keys: {sorted(_PLUGIN_KEYS)}")
        merged = dict(out.get(key) or {})
        for name, opts in value.items():
            if key == "plugin_options" and not isinstance(opts, Mapping):
                raise ConfigurationError(
                    f"plugin_options.{name} in {origin} must be a table/dict, got {type(opts).__name__}")
            merged[name] = {**dict(merged.get(name) or {}), **dict(opts)} if key == "plugin_options" else opts
        out[key] = merged
    return out


def read_toml(path: Union[str, Path]) -> Dict[str, Any]:
    import sys
    from pathlib import Path

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    p = Path(path).expanduser()
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigurationError(f"Configuration file not found: {p}") from None
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigurationError(f"Configuration file {p} cannot be read ({exc.strerror}); give a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"Configuration file {p} is not valid TOML: {exc}") from None
    section = data.get("abstractruntime", data)
    if not isinstance(section, dict):
        raise ConfigurationError(f"[abstractruntime] in {p} must be a table")
    return section


def _from_env(environ: Mapping[str, str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {k.lower(): environ[f"ABSTRACTRUNTIME_{k}"] for k in ("STORE", "DURABILITY")
                           if environ.get(f"ABSTRACTRUNTIME_{k}")}
    plugins: Dict[str, Any] = {}
    for key in sorted(_PLUGIN_KEYS):  # ABSTRACTRUNTIME_PLUGINS_AUTOLOAD / _STRICT / _ALLOW / _BLOCK
        name = f"ABSTRACTRUNTIME_PLUGINS_{key.upper()}"
        if name in environ:
            plugins[key] = _bool(environ[name], name) if key in ("autoload", "strict") else environ[name]
    if plugins:
        out["plugins"] = plugins
    return out


def load_settings(
    source: Union[None, "Settings", Mapping[str, Any], str, Path] = None,
    *,
    environ: Optional[Mapping[str, str]] = None,
) -> Settings:
    """Build :class:`Settings` from a dict, a TOML path, or (``None``) the environment alone."""
    if isinstance(source, Settings):
        return source
    env = os.environ if environ is None else environ
    merged: Dict[str, Any] = {}
    file_path: Optional[Union[str, Path]] = None
    if isinstance(source, (str, os.PathLike)):
        file_path = source
    elif env.get("ABSTRACTRUNTIME_CONFIG"):
        file_path = env["ABSTRACTRUNTIME_CONFIG"]
    if file_path is not None:
        merged = _merge(merged, read_toml(file_path), f"configuration file {file_path}")
    merged = _merge(merged, _from_env(env), "environment")
    if isinstance(source, Mapping):
        merged = _merge(merged, source, "the configuration dict")
    elif source is not None and not isinstance(source, (str, os.PathLike)):
        raise ConfigurationError(
            f"Configuration must be a dict, a path to a TOML file, or None; got {type(source).__name__}"
        )
    plugins = dict(merged.get("plugins") or {})
    for key in ("autoload", "strict"):
        if key in plugins:
            plugins[key] = _bool(plugins[key], f"plugins.{key}")
    effects = merged.get("effects") or {}
    return Settings(
        store=merged.get("store"),
        store_options=dict(merged.get("store_options") or {}),
        plugins=PluginSettings(**plugins),
        effects={str(k): str(v) for k, v in effects.items()},
        plugin_options={str(k): dict(v) for k, v in (merged.get("plugin_options") or {}).items()},
        durability=merged.get("durability", "barrier"),
        inline_backoff_s=merged.get("inline_backoff_s", 1.0),
    )


def parse_store_url(url: str, options: Optional[Mapping[str, Any]] = None) -> StoreLocation:
    """Parse ``scheme://path?opt=value`` (or a bare store name) into a :class:`StoreLocation`.

    ``lmdb:///abs/path`` and ``lmdb://relative/path`` both give a filesystem path; ``postgresql://user@host/db``
    keeps its network location in ``path`` untouched for the plugin to interpret.
    """
    text = url.strip()
    if "://" not in text:
        if not text or any(c in text for c in "/\\:?"):
            scheme = text.split(":")[0] if ":" in text else "lmdb"
            raise ConfigurationError(
                f"Store URL {url!r} is not valid: expected '{scheme}:///absolute/path', '{scheme}://relative/path' "
                f"(three slashes before an absolute path) or a bare store name (e.g. 'memory')")
        merged = dict(options or {})
        return StoreLocation(url=text, scheme=text.lower(), path="", options=merged)
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if not scheme:
        raise ConfigurationError(f"Store URL {url!r} has no scheme; expected e.g. 'lmdb:///var/lib/app'")
    path = unquote(parts.netloc + parts.path)
    merged = dict(options or {})
    merged.update(dict(parse_qsl(parts.query)))
    read_only = _bool(merged.pop("read_only", False), "store option read_only")
    return StoreLocation(url=text, scheme=scheme, path=path, options=merged, read_only=read_only)
