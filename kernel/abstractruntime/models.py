"""The data model: attrs classes compatible with AbstractRuntime 0.4.2's dataclasses (field names, order, defaults),
plus ``RunState.step`` and ``RunState.revision``, last (docs/compatibility.md). (De)serialisation goes through
:mod:`abstractruntime.codec`; the ``to_dict()`` helpers are shortcuts to it."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Callable, Dict, List, Optional, Union

from attrs import define, evolve, field, fields_dict, frozen, setters

from .errors import NotFoundError, ValidationError


def _unstructure(obj: Any) -> Dict[str, Any]:
    from .codec import converter
    return converter.unstructure(obj)


_SECOND = (0, "")  # (epoch second, its ISO-8601 text): formatted once a second, not at every call


def utc_now_iso() -> str:
    """Current UTC time as ISO-8601 with a ``+00:00`` offset (the reference's timestamp form), as
    ``datetime.now(timezone.utc).isoformat()`` writes it (no fraction at 0 us), in 40% of its time."""
    global _SECOND
    sec, us = divmod(time.time_ns() // 1000, 1_000_000)
    second = _SECOND
    if second[0] != sec:
        second = _SECOND = (sec, datetime.fromtimestamp(sec, timezone.utc).isoformat()[:19])
    return f"{second[1]}.{us:06d}+00:00" if us else f"{second[1]}+00:00"


_IDS = threading.local()
if hasattr(os, "register_at_fork"):  # POSIX: a forked child must not draw its parent's ids
    os.register_at_fork(after_in_child=lambda: vars(_IDS).clear())


_VERSION, _VARIANT = bytes(b & 0x0F | 0x40 for b in range(256)), bytes(b & 0x3F | 0x80 for b in range(256))
_HEX_AT = [j + (j >= 8) + (j >= 12) + (j >= 16) + (j >= 20) for j in range(32)]  # hex digit -> its place in 8-4-4-4-12


def new_id() -> str:
    """A random UUID (version 4) string, as ``str(uuid.uuid4())``: made 256 at a time per thread from one os.urandom
    read, laid out by 32 slice copies (a digit's place in every id at once): 0.15 us a call, refill included."""
    pool = getattr(_IDS, "pool", None)
    if not pool:
        raw = bytearray(os.urandom(4096))
        raw[6::16], raw[8::16] = raw[6::16].translate(_VERSION), raw[8::16].translate(_VARIANT)
        digits, text = raw.hex().encode(), bytearray(b"-" * 9216)
        for j, at in enumerate(_HEX_AT):
            text[at::36] = digits[j::32]
        ids = text.decode()
        pool = _IDS.pool = [ids[i:i + 36] for i in range(0, 9216, 36)]
    return pool.pop()


class RunStatus(str, Enum):
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class WaitReason(str, Enum):
    EVENT = "event"
    UNTIL = "until"
    USER = "user"
    JOB = "job"
    SUBWORKFLOW = "subworkflow"


class StepStatus(str, Enum):
    STARTED = "started"
    COMPLETED = "completed"
    WAITING = "waiting"
    FAILED = "failed"


class EffectType(str, Enum):
    """The reference's effect types. Third-party effect types are plain strings."""

    WAIT_EVENT = "wait_event"
    WAIT_UNTIL = "wait_until"
    ASK_USER = "ask_user"
    ANSWER_USER = "answer_user"
    EMIT_EVENT = "emit_event"
    LLM_CALL = "llm_call"
    TOOL_CALLS = "tool_calls"
    MEMORY_QUERY = "memory_query"
    MEMORY_TAG = "memory_tag"
    MEMORY_COMPACT = "memory_compact"
    MEMORY_NOTE = "memory_note"
    MEMORY_REHYDRATE = "memory_rehydrate"
    MEMORY_KG_ASSERT = "memory_kg_assert"
    MEMORY_KG_QUERY = "memory_kg_query"
    MEMORY_KG_RESOLVE = "memory_kg_resolve"
    VARS_QUERY = "vars_query"
    START_SUBWORKFLOW = "start_subworkflow"


_EFFECT_TYPES = {e.value: e for e in EffectType}


def coerce_effect_type(value: Union[EffectType, str]) -> Union[EffectType, str]:
    """A known value becomes its ``EffectType`` member; any other non-empty string is kept (third-party type)."""
    if isinstance(value, EffectType):
        return value
    if isinstance(value, str) and value.strip():
        return _EFFECT_TYPES.get(value, value)
    raise ValidationError(f"Effect type must be an EffectType or a non-empty string, got {value!r}")


def effect_type_value(value: Union[EffectType, str]) -> str:
    return value._value_ if isinstance(value, Enum) else str(value)  # (``.value`` is a Python-level property)


def _dict_or_empty(value: Any) -> dict:
    return {} if value is None else value


def _member_of(cls: Any) -> Any:  # a converter that returns a member at once (``Enum(...)`` costs ~1 us)
    return lambda value: value if type(value) is cls else cls._value2member_map_.get(value) or cls(value)


@frozen
class Effect:
    type: Union[EffectType, str] = field(converter=coerce_effect_type)
    payload: Dict[str, Any] = field(factory=dict, converter=_dict_or_empty)
    result_key: Optional[str] = None

    @property
    def type_value(self) -> str:
        return effect_type_value(self.type)

    def to_record(self) -> Dict[str, Any]:
        """The ``{type, payload, result_key}`` form stored in ledger rows and traces."""
        return {"type": self.type_value, "payload": self.payload, "result_key": self.result_key}


@frozen
class StepPlan:
    node_id: str
    effect: Optional[Effect] = None
    next_node: Optional[str] = None
    complete_output: Optional[Dict[str, Any]] = None


@define(on_setattr=setters.NO_OP)
class WaitState:
    reason: WaitReason = field(converter=_member_of(WaitReason))
    wait_key: Optional[str] = None
    until: Optional[str] = None
    resume_to_node: Optional[str] = None
    result_key: Optional[str] = None
    prompt: Optional[str] = None
    choices: Optional[List[str]] = None
    allow_free_text: bool = True
    details: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return _unstructure(self)


@define(on_setattr=setters.NO_OP)  # no __setattr__ hook (it costs every field): ``status`` converts (below)
class RunState:
    run_id: str
    workflow_id: str
    status: RunStatus = field(converter=_member_of(RunStatus))
    current_node: str
    vars: Dict[str, Any] = field(factory=dict)
    waiting: Optional[WaitState] = None
    output: Optional[Dict[str, Any]] = None
    error: Optional[str] = None
    created_at: str = field(factory=utc_now_iso)
    updated_at: str = field(factory=utc_now_iso)
    actor_id: Optional[str] = None
    session_id: Optional[str] = None
    parent_run_id: Optional[str] = None
    step: int = 0
    revision: int = 0
    workflow_version: Optional[str] = None  #: the ``WorkflowSpec.version`` the run started with

    @classmethod
    def new(cls, *, workflow_id: str, entry_node: str, actor_id: Optional[str] = None,
            session_id: Optional[str] = None, vars: Optional[Dict[str, Any]] = None,
            parent_run_id: Optional[str] = None) -> "RunState":
        now = utc_now_iso()
        return cls(run_id=new_id(), workflow_id=workflow_id, status=RunStatus.RUNNING, current_node=entry_node,
                   vars=vars or {}, actor_id=actor_id, session_id=session_id, parent_run_id=parent_run_id,
                   created_at=now, updated_at=now)

    @property
    def is_paused(self) -> bool:
        runtime_ns = self.vars.get("_runtime") if isinstance(self.vars, dict) else None
        control = runtime_ns.get("control") if isinstance(runtime_ns, dict) else None
        return isinstance(control, dict) and control.get("paused") is True

    def to_dict(self) -> Dict[str, Any]:
        return _unstructure(self)


@define(on_setattr=setters.NO_OP)
class StepRecord:
    run_id: str
    step_id: str
    node_id: str
    status: StepStatus = field(converter=_member_of(StepStatus))
    effect: Optional[Dict[str, Any]] = None
    result: Optional[Dict[str, Any]] = None
    error: Optional[str] = None
    started_at: str = field(factory=utc_now_iso)
    ended_at: Optional[str] = None
    actor_id: Optional[str] = None
    session_id: Optional[str] = None
    attempt: int = 1
    idempotency_key: Optional[str] = None
    prev_hash: Optional[str] = None
    record_hash: Optional[str] = None
    signature: Optional[str] = None

    @classmethod
    def start(cls, *, run: RunState, node_id: str, effect: Optional[Effect], attempt: int = 1,
              idempotency_key: Optional[str] = None) -> "StepRecord":
        return cls(run_id=run.run_id, step_id=new_id(), node_id=node_id, status=StepStatus.STARTED,
                   effect=effect.to_record() if effect is not None else None, actor_id=run.actor_id,
                   session_id=run.session_id, attempt=attempt, idempotency_key=idempotency_key)

    def _finished(self, status: StepStatus, result: Optional[Dict[str, Any]], error: Optional[str]) -> "StepRecord":
        # Each finish returns a new row with the same step_id: the STARTED row already written stays as it was.
        return StepRecord(
            self.run_id, self.step_id, self.node_id, status, self.effect, result, error, self.started_at,
            utc_now_iso(), self.actor_id, self.session_id, self.attempt, self.idempotency_key,
            self.prev_hash, self.record_hash, self.signature,
        )

    def finish_success(self, result: Optional[Dict[str, Any]] = None) -> "StepRecord":
        return self._finished(StepStatus.COMPLETED, result, None)

    def finish_waiting(self, wait: WaitState) -> "StepRecord":
        return self._finished(StepStatus.WAITING, {"wait": wait.to_dict()}, None)

    def finish_failure(self, error: str) -> "StepRecord":
        return self._finished(StepStatus.FAILED, None, error)

    def to_dict(self) -> Dict[str, Any]:
        return _unstructure(self)


for _cls, _name in ((RunState, "status"), (StepRecord, "status"), (WaitState, "reason")):  # converted on assignment:
    _slot, _convert = _cls.__dict__[_name], fields_dict(_cls)[_name].converter  # a property over the slot (reads in
    setattr(_cls, _name, property(_slot.__get__, lambda o, v, s=_slot, c=_convert: s.__set__(o, c(v))))  # C)


NodeHandler = Callable[[RunState, Any], StepPlan]


@frozen
class WorkflowSpec:
    workflow_id: str
    entry_node: str
    nodes: Dict[str, NodeHandler]
    version: Optional[str] = None  #: runs record it and are driven only by the same version (docs/workflow-versions.md)

    def get_node(self, node_id: str) -> NodeHandler:
        if node_id not in self.nodes:
            raise NotFoundError(f"Unknown node_id '{node_id}' in workflow '{self.workflow_id}'")
        return self.nodes[node_id]

    def is_terminal(self, node_id: str) -> bool:  # reference API; terminal-ness comes from the plan
        return False


DEFAULT_MAX_TOKENS = 32768


@frozen
class RuntimeConfig:
    """Per-run limits configuration (the reference's ``RuntimeConfig``); copied into ``vars._limits`` at start."""

    max_iterations: int = 25
    warn_iterations_pct: int = 80
    max_tokens: Optional[int] = None
    max_output_tokens: Optional[int] = None
    max_input_tokens: Optional[int] = None
    warn_tokens_pct: int = 80
    max_history_messages: int = -1
    provider: Optional[str] = None
    model: Optional[str] = None
    model_capabilities: Dict[str, Any] = field(factory=dict)

    def to_limits_dict(self) -> Dict[str, Any]:
        caps = self.model_capabilities or {}
        max_tokens = self.max_tokens if self.max_tokens is not None else caps.get("max_tokens") or DEFAULT_MAX_TOKENS
        max_output = self.max_output_tokens if self.max_output_tokens is not None else caps.get("max_output_tokens")
        max_input = self.max_input_tokens
        if max_input is not None and max_output is not None:
            max_input = max(0, min(int(max_input), int(max_tokens) - int(max_output) - 256))
        return {"max_iterations": self.max_iterations, "current_iteration": 0, "max_tokens": max_tokens,
                "max_output_tokens": max_output, "max_input_tokens": max_input, "estimated_tokens_used": 0,
                "max_history_messages": self.max_history_messages, "warn_iterations_pct": self.warn_iterations_pct,
                "warn_tokens_pct": self.warn_tokens_pct}

    def with_capabilities(self, capabilities: Dict[str, Any]) -> "RuntimeConfig":
        return evolve(self, model_capabilities=dict(capabilities))


@frozen
class EffectOutcome:
    """What an effect handler returns: completed (with a result), waiting (with a WaitState) or failed."""

    status: str
    result: Optional[Dict[str, Any]] = None
    wait: Optional[WaitState] = None
    error: Optional[str] = None

    @classmethod
    def completed(cls, result: Optional[Dict[str, Any]] = None) -> "EffectOutcome":
        return cls(status="completed", result=result)

    @classmethod
    def waiting(cls, wait: WaitState) -> "EffectOutcome":
        return cls(status="waiting", wait=wait)

    @classmethod
    def failed(cls, error: str) -> "EffectOutcome":
        return cls(status="failed", error=error)
