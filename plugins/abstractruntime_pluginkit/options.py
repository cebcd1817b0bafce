"""Plugin and store options: the one way every plugin reads and checks its configuration.

A plugin declares its options as a frozen attrs class (the valid keys, their types and defaults, validators for
ranges) and reads them with :func:`plugin_options` (``[abstractruntime.plugin_options.<plugin>]`` of a runtime,
parsed once per runtime) or :func:`structure_options` (any raw dict, e.g. a store's URL options)::

    @frozen
    class SchedulerOptions:
        workers: int = field(default=2, validator=attrs.validators.ge(1))
        poll_interval_s: float = 1.0

    opts = plugin_options(runtime, "scheduler", SchedulerOptions)

Types are converted with the codec's cattrs converter (plus the coercions configuration text needs: ``"true"``,
``"8"``); unknown keys, wrong types and failed validators are :class:`~abstractruntime.errors.ConfigurationError`
with one wording everywhere (``plugin_options.scheduler.workers must be an integer, got 'many'``, or with a
phrase as ``where``: ``lmdb store options: 'map_size' must be an integer, got 'big'``;
``Unknown option(s) 'wrkers' in plugin_options.scheduler; valid options: poll_interval_s, workers``).
"""

from __future__ import annotations

import os
import typing
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import attrs

from abstractruntime import StashKey
from abstractruntime.errors import ConfigurationError, ValidationError


_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}


def _options_converter() -> Any:
    """The codec's converter, plus the coercions configuration text needs (``"false"`` is False, ``"8"`` is 8) and
    the checks free-form JSON fields skip there: a sequence field takes a list (never a string, whose letters would
    pass), a mapping field a table, and a union its first member that accepts the value."""
    from abstractruntime.codec import converter

    conv = converter.copy()

    def to_bool(value: Any, _t: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE_WORDS or text in _FALSE_WORDS:
            return text in _TRUE_WORDS
        raise ValidationError("expected true or false")

    def to_number(kind: type) -> Any:
        def structure(value: Any, _t: Any) -> Any:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValidationError(f"expected {'an integer' if kind is int else 'a number'}")
            return kind(value.strip() if isinstance(value, str) else value)
        return structure

    def to_text(value: Any, _t: Any) -> str:
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        raise ValidationError("expected text")

    conv.register_structure_hook(bool, to_bool)
    conv.register_structure_hook(int, to_number(int))
    conv.register_structure_hook(float, to_number(float))
    conv.register_structure_hook(str, to_text)
    inner = conv.copy()  # the scalar coercions, for the members of containers

    def origin(t: Any) -> Any:
        return typing.get_origin(t) or t

    def to_sequence(value: Any, t: Any) -> Any:
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise ValidationError("expected a list")
        args = [a for a in typing.get_args(t) if a is not Ellipsis]
        items = [inner.structure(v, args[0]) if args and args[0] is not Any else v for v in value]
        return origin(t)(items) if origin(t) in (list, tuple, set, frozenset) else items

    def to_mapping(value: Any, t: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValidationError("expected a table")
        args = typing.get_args(t)
        if len(args) == 2 and args[1] is not Any:
            return {str(k): inner.structure(v, args[1]) for k, v in value.items()}
        return {str(k): v for k, v in value.items()}

    def to_union(value: Any, t: Any) -> Any:
        members = typing.get_args(t)
        if value is None and type(None) in members:
            return None
        for member in (m for m in members if m is not type(None)):
            try:
                return conv.structure(value, member)
            except Exception:
                continue
        raise ValidationError("matches none of the accepted types")

    conv.register_structure_hook_func(lambda t: origin(t) in (list, tuple, set, frozenset), to_sequence)
    conv.register_structure_hook_func(lambda t: origin(t) is dict, to_mapping)
    conv.register_structure_hook_func(lambda t: origin(t) is Union, to_union)
    return conv


def _raise(exc: Exception) -> Any:
    raise exc


_CONVERTER: Any = None


def structure_options(cls: Any, raw: Optional[Mapping[str, Any]], *, where: str) -> Any:
    """Build the (frozen attrs) options class ``cls`` from ``raw``, the one way every plugin reads its options.

    Unknown keys are refused with a message listing the valid ones; each value is converted to its field's type
    (configuration text included: ``"true"``, ``"8"``); attrs validators run. Every problem is a
    :class:`ConfigurationError` that names ``where`` (e.g. ``"plugin_options.artifacts"``) and the key.
    """
    global _CONVERTER
    if _CONVERTER is None:
        _CONVERTER = _options_converter()
    attrs.resolve_types(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    data = dict(raw or {})
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigurationError(f"Unknown option(s) {', '.join(map(repr, unknown))} in {where}; valid options: "
                                 f"{', '.join(sorted(fields)) or '(none)'}")
    values = {}
    for name, value in data.items():
        try:
            values[name] = _CONVERTER.structure(value, fields[name].type)
        except Exception as exc:
            key = f"{where}.{name}" if " " not in where else f"{where}: {name!r}"  # a dotted path, or a phrase
            raise ConfigurationError(f"{key} must be {_expected(fields[name].type)}, got {value!r}") from None
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def _expected(tp: Any) -> str:
    """``must be ...`` for a field type: ``an integer``, ``a list of text``, ``true or false or nothing``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin is Union:
        text = " or ".join(_expected(a) for a in args)
        return text + (" (or nothing)" if len(args) < len(typing.get_args(tp)) else "")
    if origin in (list, tuple, List, Tuple, set, frozenset):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin in (dict, Dict) or tp is dict:
        return "a table (dict)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(tp, getattr(
        tp, "__name__", str(tp)))


def _plural(tp: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings"}.get(tp, _expected(tp))


_OPTIONS_CACHE: "StashKey[Dict[Tuple[str, Any], Any]]" = StashKey()


def plugin_options(runtime: Any, plugin: str, cls: Any) -> Any:
    """``[abstractruntime.plugin_options.<plugin>]`` of ``runtime``'s settings as ``cls`` (see
    :func:`structure_options`), parsed once per runtime (cached in ``runtime.stash``)."""
    cache = runtime.stash.setdefault_factory(_OPTIONS_CACHE, dict)
    key = (plugin, cls)
    if key not in cache:
        cache[key] = structure_options(cls, runtime.settings.options_for(plugin), where=f"plugin_options.{plugin}")
    return cache[key]


__all__ = ["structure_options", "plugin_options"]
