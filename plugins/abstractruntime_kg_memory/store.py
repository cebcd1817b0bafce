"""Which KG store a runtime uses: ``[abstractruntime.plugin_options.kg_memory]``.

``store``:

* ``"sqlite:///abs/kg.sqlite3"``, ``"sqlite://rel/kg.sqlite3"`` or a plain file path ending in ``.sqlite3``,
  ``.sqlite`` or ``.db`` -- an ``abstractmemory.SQLiteTripleStore`` in that file (durable);
* a directory path (``"/var/lib/app/kg"``; an existing directory, or a path ending in ``/`` or without a suffix) --
  ``<dir>/kg_memory.sqlite3``;
* ``"memory://"`` -- an ``InMemoryTripleStore`` (lost at exit; results carry a warning);
* unset -- ``kg_memory.sqlite3`` beside the runtime's store (the directory of its artifacts: an LMDB, SQLite or
  JSON-files store), else under the default home (``$ABSTRACTRUNTIME_HOME``).

``table`` names the SQLite table (default ``triples``). ``embedder_base_url`` + ``embedder_model`` (and
``embedder_api_key_env``, the name of an environment variable holding a key) give the store an OpenAI-compatible
embedder, which semantic queries (``query_text``) need.

The store is opened at the first KG effect of a runtime (never at construction) and kept for the runtime's life.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any, Optional

from attrs import field, frozen

from abstractruntime import StashKey
from abstractruntime.errors import ConfigurationError, ValidationError
from abstractruntime_pluginkit import plugin_options, structure_options

from .terms import abstractmemory_types

PLUGIN_NAME = "kg_memory"
DEFAULT_FILE = "kg_memory.sqlite3"
FILE_SUFFIXES = (".sqlite3", ".sqlite", ".db")
OPTIONS = f"[abstractruntime.plugin_options.{PLUGIN_NAME}]"


def _optional_text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


@frozen
class KgMemoryOptions:
    """``[abstractruntime.plugin_options.kg_memory]`` (see the module doc)."""

    store: Optional[str] = field(default=None, converter=_optional_text)
    table: str = "triples"
    embedder_base_url: Optional[str] = None
    embedder_model: Optional[str] = None
    embedder_api_key_env: Optional[str] = None

    def __attrs_post_init__(self) -> None:
        if bool(self.embedder_base_url) != bool(self.embedder_model):
            raise ValidationError("embedder_base_url and embedder_model go together: set both or neither")


def options_for(runtime: Any) -> KgMemoryOptions:
    return plugin_options(runtime, PLUGIN_NAME, KgMemoryOptions)


def check_options(raw: Any) -> KgMemoryOptions:
    opts = structure_options(KgMemoryOptions, raw, where=f"plugin_options.{PLUGIN_NAME}")
    if opts.store is not None:
        store_target(opts.store, default_dir=Path("."))
    return opts


def store_target(spec: Optional[str], *, default_dir: Path) -> Optional[Path]:
    """The SQLite file ``spec`` names (None for ``memory://``); ``default_dir/kg_memory.sqlite3`` when unset."""
    if spec is None or not spec.strip():
        return default_dir / DEFAULT_FILE
    text = spec.strip()
    if text in ("memory", "memory://"):
        return None
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme != "sqlite" or not rest:
            raise ConfigurationError(
                f"{OPTIONS} store = {spec!r} is not a KG store: use 'sqlite:///<absolute path>', 'sqlite://<relative "
                f"path>', a directory, or 'memory://'")
        text = rest
    path = Path(text).expanduser()
    if text.endswith(("/", os.sep)) or path.is_dir() or path.suffix.lower() not in FILE_SUFFIXES:
        return path / DEFAULT_FILE
    return path


def default_dir_for(runtime: Any) -> Path:
    """Beside the runtime's store (its sibling directory), else the default home."""
    sibling = getattr(runtime.backend, "sibling_dir", None)
    if sibling is not None:
        return Path(sibling)
    from abstractruntime.settings import default_home

    return default_home()


def _embedder(opts: KgMemoryOptions) -> Any:
    if not opts.embedder_base_url:
        return None
    from abstractmemory import OpenAICompatTextEmbedder

    key = os.environ.get(opts.embedder_api_key_env) if opts.embedder_api_key_env else None
    return OpenAICompatTextEmbedder(opts.embedder_base_url, opts.embedder_model or "", api_key=key)


def open_kg_store(opts: KgMemoryOptions, *, default_dir: Path) -> Any:
    """Open the store ``opts`` select (``abstractmemory`` must be installed)."""
    abstractmemory_types("The KG store")
    from abstractmemory import InMemoryTripleStore, SQLiteTripleStore

    target = store_target(opts.store, default_dir=default_dir)
    embedder = _embedder(opts)
    # the configured model is the store's embedding space (its dimension is fixed by the first write): a later
    # configuration with another model is refused instead of mixing vectors of two spaces
    pin = {"model_id": opts.embedder_model, "source": "creation"} if embedder is not None else None
    if target is None:
        return InMemoryTripleStore(embedder=embedder, embedding_pin=pin)
    try:
        return SQLiteTripleStore(target, table_name=opts.table, embedder=embedder, embedding_pin=pin)
    except OSError as exc:
        from abstractruntime_storekit.opening import os_error

        raise os_error(exc, target, "KG memory") from exc
    except ValueError as exc:  # a bad table name, an embedding-space mismatch
        raise ConfigurationError(f"{OPTIONS}: cannot open the KG store {target}: {exc}") from exc


_STORE = StashKey[Any]()


def kg_store_for(runtime: Any) -> Any:
    """The KG store of ``runtime`` (opened on first use, closed when the runtime is collected)."""

    def open_it() -> Any:
        store = open_kg_store(options_for(runtime), default_dir=default_dir_for(runtime))
        weakref.finalize(runtime, store.close)
        return store

    return runtime.stash.setdefault_factory(_STORE, open_it)


def close_kg_store(runtime: Any) -> None:
    """Close the KG store ``runtime`` opened, if any (a later KG effect opens it again)."""
    store = runtime.stash.get(_STORE)
    if store is not None:
        del runtime.stash[_STORE]
        store.close()


__all__ = ["KgMemoryOptions", "kg_store_for", "close_kg_store", "open_kg_store", "store_target", "options_for",
           "check_options", "PLUGIN_NAME", "DEFAULT_FILE"]
