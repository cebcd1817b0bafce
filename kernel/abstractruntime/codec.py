"""The one cattrs converter, JSON encoding, and the JSON invariant: ``encode_run`` / ``encode_record`` refuse what is
not plain JSON, naming the first offending path, e.g. ``vars.items[2].when`` (docs/architecture.md)."""

from __future__ import annotations

import importlib
import json
import math
import operator
from typing import Any, Dict, List, Optional, Tuple, Union

import orjson

from .errors import InvalidTypeError, JsonInvariantError, ValidationError
from .models import (EffectType, RunState, RunStatus, StepRecord, StepStatus, WaitReason, WaitState, WorkflowSpec,
    coerce_effect_type, effect_type_value, utc_now_iso)


# Checkpoints are decoded on every load and timer poll: explicit hooks take a few microseconds, generated code ~20.
# Unknown keys are ignored (forward compatibility); missing optional keys take the model's defaults.
def _structure_wait(d: Dict[str, Any], _t: Any = None) -> WaitState:
    return WaitState(reason=d["reason"], wait_key=d.get("wait_key"), until=d.get("until"),
                     resume_to_node=d.get("resume_to_node"), result_key=d.get("result_key"), prompt=d.get("prompt"),
                     choices=d.get("choices"), allow_free_text=d.get("allow_free_text", True), details=d.get("details"))


def _structure_run(d: Dict[str, Any], _t: Any = None) -> RunState:
    waiting, get = d.get("waiting"), d.get
    return RunState(
        run_id=d["run_id"], workflow_id=d["workflow_id"], status=d["status"], current_node=d["current_node"],
        vars=get("vars") if get("vars") is not None else {},
        waiting=_structure_wait(waiting) if waiting is not None else None, output=get("output"), error=get("error"),
        actor_id=get("actor_id"), session_id=get("session_id"), parent_run_id=get("parent_run_id"),
        created_at=get("created_at") or utc_now_iso(), updated_at=get("updated_at") or utc_now_iso(),
        step=get("step", 0), revision=get("revision", 0), workflow_version=get("workflow_version"))


def _import_path(fn: Any) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise InvalidTypeError(
            f"Node handler {fn!r} cannot be serialised: only module-level functions (importable as "
            f"'module:qualname') can be written to JSON; lambdas and closures cannot."
        )
    return f"{module}:{qualname}"


def _resolve_import_path(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise ValidationError(f"Node handler reference {path!r} is not of the form 'module:qualname'")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# Free-form JSON fields (vars, output, details, effect, result) are checked by ``check_json`` and passed through as
# they are, both ways: (un)structuring them value by value only costs time (80% of decoding a checkpoint).
_JSON_FIELD_TYPES = (Dict[str, Any], Optional[Dict[str, Any]], Optional[List[str]])
_PLAIN_TYPES = (Optional[str], Optional[int], Optional[bool])
_converter: Any = None
_to_dict: Any = None


def _build_converter() -> Any:
    """The converter, built on first use: ``import cattrs`` and its hooks are a third of ``import abstractruntime``."""
    global _converter
    import cattrs
    import cattrs.fns

    conv = cattrs.Converter(detailed_validation=False)
    conv.register_structure_hook(Union[EffectType, str], lambda v, _t: coerce_effect_type(v))
    conv.register_unstructure_hook(Union[EffectType, str], effect_type_value)
    for enum in (RunStatus, WaitReason, StepStatus, EffectType):  # enums become their plain string values, read at
        conv.register_unstructure_hook(enum, operator.attrgetter("_value_"))  # C speed (``.value``: a Python property)
    # cattrs inlines a field whose hook is its ``identity`` (a function call per field otherwise)
    conv.register_unstructure_hook_func(lambda t: t in _JSON_FIELD_TYPES or t in _PLAIN_TYPES, cattrs.fns.identity)
    conv.register_structure_hook_func(lambda t: t in _JSON_FIELD_TYPES, lambda value, _t: value)
    conv.register_structure_hook(WaitState, _structure_wait)
    conv.register_structure_hook(RunState, _structure_run)
    conv.register_unstructure_hook(WorkflowSpec, lambda spec: {
        "workflow_id": spec.workflow_id, "entry_node": spec.entry_node,
        "nodes": {node_id: _import_path(fn) for node_id, fn in spec.nodes.items()},
        **({"version": spec.version} if spec.version is not None else {})})
    conv.register_structure_hook(WorkflowSpec, lambda d, _t: WorkflowSpec(
        workflow_id=d["workflow_id"], entry_node=d["entry_node"], version=d.get("version"),
        nodes={node_id: _resolve_import_path(ref) for node_id, ref in d["nodes"].items()}))
    _converter = conv
    return conv


def __getattr__(name: str) -> Any:  # ``codec.converter``: the one cattrs converter (PEP 562: built on first use)
    if name == "converter":
        return _converter or _build_converter()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON of an already-checked JSON value, in bytes of its own size: orjson returns its growth
    buffer (4-8 KiB for a small value, up to twice a large one), which a store keeping the bytes would keep too."""
    return memoryview(orjson.dumps(value)).tobytes()


#: orjson's strict mode: it refuses what it cannot write as itself (datetimes, dataclasses, str/int/... subclasses)
STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def plain_json(value: Any) -> Optional[Tuple[bytes, Any]]:
    """``(JSON bytes, decoded copy)`` of ``value`` if it is certainly plain JSON, else None (let :func:`check_json`
    decide). orjson refuses other types, non-string keys, integers past 64 bits and nesting past 254 levels (four list
    wrappers make that the check's 250); what it writes as something else (NaN/Infinity as null, a tuple as a list,
    an Enum or UUID as its value) is caught by decoding and comparing. All at C speed: a fraction of a Python walk."""
    wrapped = [[[[value]]]]
    try:
        data = orjson.dumps(wrapped, option=STRICT)
    except TypeError:
        return None
    copy = orjson.loads(data)
    return (data[4:-4], copy[0][0][0][0]) if copy == wrapped else None


def to_json_text(value: Any) -> str:
    return to_json_bytes(value).decode("utf-8")


def from_json_text(text: Union[str, bytes]) -> Any:
    return orjson.loads(text)


def _fmt_key(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def find_json_violation(value: Any, path: str) -> Optional[tuple]:
    """Return ``(path, problem)`` for the first value that is not plain JSON, or None if all is well."""
    # Iterative depth-first walk; ``on_path`` holds the ids of the containers on the current path (cycle check).
    stack: list = [(value, path, False, 0)]
    on_path: set = set()
    while stack:
        item, where, leaving, depth = stack.pop()
        if depth > _MAX_DEPTH:  # before paths of every level pile up (a 100,000-deep value would take gigabytes)
            return where, f"nested more than {_MAX_DEPTH} levels deep (JSON encoders keep at most 254)"
        if leaving:
            on_path.discard(id(item))
            continue
        t = type(item)
        if t is str or t is bool or item is None:
            continue
        if t is int:
            if not _INT_MIN <= item <= _INT_MAX:
                return where, f"integer {item} is outside the 64-bit range JSON readers keep exactly (store it as a string)"
            continue
        if t is float:
            if not math.isfinite(item):
                return where, f"{item!r} is not allowed in JSON (NaN and Infinity have no JSON form)"
            continue
        if t is dict or t is list or t is tuple:
            if id(item) in on_path:
                return where, "cycle: this container contains itself"
            on_path.add(id(item))
            stack.append((item, where, True, depth))
            if t is dict:
                for k, v in item.items():
                    if type(k) is not str:
                        return f"{where}[{k!r}]", f"key {k!r} is a {type(k).__name__}; JSON object keys must be strings"
                    stack.append((v, _fmt_key(where, k), False, depth + 1))
            else:
                for i, v in enumerate(item):
                    stack.append((v, f"{where}[{i}]", False, depth + 1))
            continue
        if isinstance(item, (str, int)) and not isinstance(item, bool):
            continue  # str/int subclasses such as str-Enums encode as their value
        if isinstance(item, float):
            if not math.isfinite(item):
                return where, f"{item!r} is not allowed in JSON"
            continue
        return where, f"{t.__module__}.{t.__qualname__} object is not plain JSON"
    return None


_MAX_FAST_DEPTH, _MAX_DEPTH = 100, 250


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what every reader (orjson, SQLite, most languages) keeps exactly


def _is_plain_json(value: Any, depth: int = 0) -> bool:
    """Fast check without paths (True: certainly plain JSON; False: let the path-finding walk decide)."""
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return _INT_MIN <= value <= _INT_MAX
    if t is float:
        return math.isfinite(value)
    if depth > _MAX_FAST_DEPTH:
        return False  # deep or cyclic: the slow walk tells which
    if t is dict:
        items: Any = value.values()
        for k in value:
            if type(k) is not str:
                return False
    elif t is list or t is tuple:
        items = value
    else:
        return False
    for v in items:  # scalars inline: a call per leaf would cost more than the check of it
        tv = type(v)
        if tv is str or tv is bool or v is None:
            continue
        if tv is int or tv is float:  # in range; finite (inf - inf and nan - nan are nan)
            if (_INT_MIN <= v <= _INT_MAX) if tv is int else v - v == 0.0:
                continue
            return False
        if not _is_plain_json(v, depth + 1):
            return False
    return True


def check_json(value: Any, path: str, *, run_id: Optional[str] = None, node_id: Optional[str] = None) -> None:
    if _is_plain_json(value):
        return
    violation = find_json_violation(value, path)
    if violation is not None:
        raise JsonInvariantError(path=violation[0], problem=violation[1], run_id=run_id, node_id=node_id)


def _dict_hooks() -> Any:
    """cattrs' generated unstructure functions of RunState and StepRecord, called past its dispatch (per commit)."""
    global _to_dict
    conv = _converter or _build_converter()
    _to_dict = (conv.get_unstructure_hook(RunState), conv.get_unstructure_hook(StepRecord))
    return _to_dict


def run_to_dict(run: RunState) -> Dict[str, Any]:
    return (_to_dict or _dict_hooks())[0](run)


def run_from_dict(data: Dict[str, Any]) -> RunState:
    return _structure_run(data)  # the converter's hook for RunState


def record_to_dict(record: StepRecord) -> Dict[str, Any]:
    return (_to_dict or _dict_hooks())[1](record)


def record_from_dict(data: Dict[str, Any]) -> StepRecord:
    return (_converter or _build_converter()).structure(data, StepRecord)


def check_run(run: RunState, *, node_id: Optional[str] = None, vars_checked: bool = False) -> None:
    """Check vars (unless ``vars_checked``), output and wait details before anything is converted or written."""
    rid = run.run_id
    if not vars_checked:
        check_json(run.vars, "vars", run_id=rid, node_id=node_id)
    check_json(run.output, "output", run_id=rid, node_id=node_id)
    if run.waiting is not None:
        check_json(run.waiting.details, "waiting.details", run_id=rid, node_id=node_id)
        check_json(run.waiting.choices, "waiting.choices", run_id=rid, node_id=node_id)


def encode_run(run: RunState, *, node_id: Optional[str] = None, vars_checked: bool = False,
               vars_json: Optional[bytes] = None) -> bytes:
    """UTF-8 JSON of a run checkpoint; raises :class:`JsonInvariantError` naming the path if it is not plain JSON.
    ``vars_json``: the JSON of ``run.vars``, already checked: written into the checkpoint as it is."""
    if vars_json is None and not vars_checked:
        vars_json = (plain_json(run.vars) or (None,))[0]  # checked and encoded once
    check_run(run, node_id=node_id, vars_checked=vars_checked or vars_json is not None)
    data = run_to_dict(run)
    if vars_json is not None:
        data["vars"] = orjson.Fragment(vars_json)
    return to_json_bytes(data)


def encode_record(record: StepRecord, checked: bool = False) -> bytes:
    """``checked``: effect and result were checked when staged (commit.py): strict mode refuses a hook's since."""
    if checked:
        try:
            return memoryview(orjson.dumps(record_to_dict(record), option=STRICT)).tobytes()
        except TypeError:
            pass
    rid, node = record.run_id, record.node_id
    check_json(record.effect, "ledger.effect", run_id=rid, node_id=node)
    check_json(record.result, "ledger.result", run_id=rid, node_id=node)
    return to_json_bytes(record_to_dict(record))


def decode_run(text: Union[str, bytes]) -> RunState:
    return _structure_run(orjson.loads(text))


def decode_record(text: Union[str, bytes]) -> Dict[str, Any]:
    return from_json_text(text)


__all__ = [
    "converter", "check_json", "find_json_violation", "to_json_bytes", "to_json_text", "from_json_text", "check_run",
    "encode_run", "encode_record", "decode_run", "decode_record", "run_to_dict", "run_from_dict", "record_to_dict",
    "record_from_dict", "plain_json", "STRICT",
]
