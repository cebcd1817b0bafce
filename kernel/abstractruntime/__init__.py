"""AbstractRuntime: a durable workflow runtime built as a plugin microkernel. A workflow is a graph of node functions
``node(run, ctx) -> StepPlan``; side effects are requested as ``Effect``s and executed by plugins; every step is
checkpointed and appended to the ledger in one store commit. The names below are the kernel's; the other names of the
0.4.2 root package (``SqliteRunStore``, ``Scheduler``, ...) live in plugins and resolve on first use through the
namespace overlays (:mod:`abstractruntime._namespace`)."""

from . import _namespace
from .descriptors import EffectCall, EffectHandlerDescriptor, StoreDescriptor, StoreLocation
from .errors import (AbstractRuntimeError, ConcurrentModificationError, ConfigurationError, JsonInvariantError,
    RunNotWaitingError, RunPausedError, UnknownRunError, UnknownStoreError, WaitKeyMismatchError)
from .hookspecs import hookimpl
from .models import (Effect, EffectOutcome, EffectType, RunState, RunStatus, RuntimeConfig, StepPlan, StepRecord,
    StepStatus, WaitReason, WaitState, WorkflowSpec)
from .policy import DefaultEffectPolicy, EffectPolicy, compute_idempotency_key
from .runtime import DefaultRunContext, Runtime
from .settings import Settings, load_settings
from .stash import Stash, StashKey
from .storage.base import Capability, LedgerStore, RunStore, StoreBackend

__version__ = "0.5.0.dev0"

_OWN = [name for name, value in dict(globals()).items()  # the kernel's public names (not its submodules)
        if not name.startswith("_") and not isinstance(value, type(_namespace))]

_namespace.install()
__getattr__, __dir__ = _namespace.package_getattr(__name__, _OWN)
