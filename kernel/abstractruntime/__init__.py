"""AbstractRuntime: a durable workflow runtime built as a plugin microkernel.

A workflow is a graph of node functions ``node(run, ctx) -> StepPlan``; side effects are requested as ``Effect``s
and executed by plugins; every step is checkpointed and appended to the ledger in one store commit.
"""

from .descriptors import EffectCall, EffectHandlerDescriptor, StoreDescriptor, StoreLocation
from .errors import (
    AbstractRuntimeError,
    ConcurrentModificationError,
    ConfigurationError,
    JsonInvariantError,
    RunNotWaitingError,
    RunPausedError,
    UnknownRunError,
    UnknownStoreError,
    WaitKeyMismatchError,
)
from .hookspecs import hookimpl
from .models import (
    Effect,
    EffectOutcome,
    EffectType,
    LimitWarning,
    RunState,
    RunStatus,
    RuntimeConfig,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
    WorkflowSpec,
)
from ._lazy import lazy_exports
from .identity import ActorFingerprint
from .policy import DefaultEffectPolicy, EffectPolicy, NoRetryPolicy, RetryPolicy, compute_idempotency_key
from .registry import WorkflowRegistry
from .runtime import DefaultRunContext, Runtime
from .settings import Settings, load_settings
from .storage.base import LedgerStore, QueryableRunStore, RunStore
from .storage.observable import ObservableLedgerStore, ObservableLedgerStoreProtocol

__version__ = "0.5.0.dev0"

# Reference names whose code lives in plugin packages: resolved on first use (no import cycle, no eager loading).
__getattr__ = lazy_exports(__name__, {
    "InMemoryRunStore": "abstractruntime_inmemory.store",
    "InMemoryLedgerStore": "abstractruntime_inmemory.store",
    "JsonFileRunStore": "abstractruntime_jsonfiles.store",
    "JsonlLedgerStore": "abstractruntime_jsonfiles.store",
    "SqliteDatabase": "abstractruntime_sqlite.store",
    "SqliteRunStore": "abstractruntime_sqlite.store",
    "SqliteLedgerStore": "abstractruntime_sqlite.store",
    "HashChainedLedgerStore": "abstractruntime_provenance.chain",
    "verify_ledger_chain": "abstractruntime_provenance.chain",
    "Scheduler": "abstractruntime_scheduler.scheduler",
    "SchedulerStats": "abstractruntime_scheduler.scheduler",
    "ScheduledRuntime": "abstractruntime_scheduler.scheduler",
    "create_scheduled_runtime": "abstractruntime_scheduler.scheduler",
})

__all__ = [
    "WorkflowRegistry",
    "Scheduler",
    "SchedulerStats",
    "ScheduledRuntime",
    "create_scheduled_runtime",
    "InMemoryRunStore",
    "InMemoryLedgerStore",
    "JsonFileRunStore",
    "JsonlLedgerStore",
    "SqliteDatabase",
    "SqliteRunStore",
    "SqliteLedgerStore",
    "ObservableLedgerStore",
    "ObservableLedgerStoreProtocol",
    "HashChainedLedgerStore",
    "verify_ledger_chain",
    "ActorFingerprint",
    "Effect",
    "EffectType",
    "EffectOutcome",
    "RunState",
    "RunStatus",
    "StepPlan",
    "StepRecord",
    "StepStatus",
    "WaitReason",
    "WaitState",
    "WorkflowSpec",
    "RuntimeConfig",
    "LimitWarning",
    "Runtime",
    "DefaultRunContext",
    "EffectPolicy",
    "DefaultEffectPolicy",
    "RetryPolicy",
    "NoRetryPolicy",
    "compute_idempotency_key",
    "RunStore",
    "LedgerStore",
    "QueryableRunStore",
    "EffectCall",
    "EffectHandlerDescriptor",
    "StoreDescriptor",
    "StoreLocation",
    "Settings",
    "load_settings",
    "hookimpl",
    "AbstractRuntimeError",
    "ConcurrentModificationError",
    "ConfigurationError",
    "JsonInvariantError",
    "RunNotWaitingError",
    "RunPausedError",
    "UnknownRunError",
    "UnknownStoreError",
    "WaitKeyMismatchError",
]
