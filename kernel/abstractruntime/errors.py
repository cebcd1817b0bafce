"""Typed errors of AbstractRuntime (docs/getting-started.md#errors-you-may-see): each says what was wrong and what
to do, and keeps the reference's base class (``KeyError``, ``ValueError``) so ``except`` clauses still catch it."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence


class AbstractRuntimeError(Exception):
    """Base class of every error raised by AbstractRuntime."""

    def __init__(self, message: str, *, run_id: str | None = None, node_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.run_id = run_id
        self.node_id = node_id

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return self.message


class ValidationError(AbstractRuntimeError, ValueError):
    """A value given to the runtime, a store or a plugin is not acceptable (the message says which and why)."""


class InvalidTypeError(AbstractRuntimeError, TypeError):
    """A value of the wrong type was given (the message names the expected type)."""


class NotFoundError(AbstractRuntimeError, KeyError):
    """Something asked for by name or id does not exist (a workflow, a snapshot, an artifact, ...)."""


class InvalidStateError(AbstractRuntimeError, RuntimeError):
    """An operation is not possible in the current state (a closed store, a stopped worker, ...)."""


class UnknownRunError(NotFoundError):
    """No run with this id exists in the configured run store."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"Unknown run_id: {run_id}", run_id=run_id)


class RunNotWaitingError(AbstractRuntimeError, ValueError):
    """``resume`` was called for a run that is not waiting."""


class RunPausedError(AbstractRuntimeError, ValueError):
    """``resume`` was called for a paused run; call ``resume_run`` first."""


class WaitKeyMismatchError(AbstractRuntimeError, ValueError):
    """``resume`` was called with a wait key other than the one the run waits for. The run is unchanged."""

    def __init__(self, *, run_id: str, expected: str, got: str) -> None:
        super().__init__(f"wait_key mismatch: expected '{expected}', got '{got}' (run {run_id} is unchanged; "
                         f"resume it with the wait key stored in its WaitState)", run_id=run_id)
        self.expected = expected
        self.got = got


class JsonInvariantError(AbstractRuntimeError, TypeError):
    """A value that must be stored is not plain JSON (``path`` names it, e.g. ``vars.items[2].when``); nothing saved."""

    def __init__(self, *, path: str, problem: str, run_id: str | None = None, node_id: str | None = None) -> None:
        where = f" at node '{node_id}'" if node_id else ""
        run = f" of run {run_id}" if run_id else ""
        super().__init__(
            f"{path}: {problem}{where}{run}. Run state must be plain JSON (dict with str keys, list, str, int, "
            f"finite float, bool, None); store other objects as JSON (e.g. an ISO string for a datetime). "
            f"Nothing was persisted for this step; the last checkpoint is unchanged.", run_id=run_id, node_id=node_id)
        self.path = path
        self.problem = problem


class ConcurrentModificationError(AbstractRuntimeError):
    """The run changed in the store since this writer loaded it; nothing was written. Reload the run and retry."""

    def __init__(self, *, run_id: str, expected: Optional[int], actual: Optional[int],
                 message: Optional[str] = None) -> None:
        super().__init__(
            message or f"Run {run_id} was modified concurrently: expected revision {expected}, store has {actual}. "
                       f"Nothing was written; reload the run and retry.", run_id=run_id)
        self.expected = expected
        self.actual = actual


class EffectAlreadyStartedError(ConcurrentModificationError):
    """Another writer already reserved (``started``) or completed this effect's idempotency key; nothing was written
    and this writer does not run the effect (docs/architecture.md)."""

    def __init__(self, *, run_id: str, idempotency_key: str, status: str) -> None:
        super().__init__(
            run_id=run_id, expected=None, actual=None,
            message=f"Effect {idempotency_key} of run {run_id} was already {status} by another writer; nothing was "
                    f"written and the effect was not run again. The writer that started it completes the step.")
        self.idempotency_key = idempotency_key
        self.status = status


class ConfigurationError(AbstractRuntimeError, ValueError):
    """Configuration could not be understood."""


class UnknownStoreError(ConfigurationError):
    """The configured store name or URL scheme matches no installed store plugin."""

    def __init__(self, requested: str, available: Iterable[str]) -> None:
        names = sorted(set(available))
        super().__init__(
            f"Unknown store {requested!r}. Available stores: {', '.join(names) or '(none installed)'}. "
            f"Use a URL such as 'lmdb:///path/to/dir' or 'memory://', or install the plugin that provides it.")
        self.requested = requested
        self.available = names


class StoreError(AbstractRuntimeError):
    """A store could not complete an operation; the operation wrote nothing."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached for now (a server restart, a lost connection). Raised inside a node or an effect
    handler it is not the step's failure: the tick stops and the next one runs the step again."""


class CorruptStoreError(StoreError):
    """Data in a store could not be decoded. The message says which record."""


class LedgerGapError(CorruptStoreError):
    """A run's ledger skips a ``seq``: the store lost a record. ``records`` holds the rows read and ``cursor`` the
    last seq read, so ``list_after(after=exc.cursor)`` pages on (docs/stores.md#ledger-gaps)."""

    def __init__(self, *, run_id: str, missing_seq: int, found_seq: int, records: List[Dict[str, Any]],
                 cursor: Optional[int] = None, store: str = "") -> None:
        before = f"after seq {missing_seq - 1}" if missing_seq > 1 else "as the first record"
        super().__init__(
            f"{store + ': ' if store else ''}ledger of run {run_id} is missing record seq {missing_seq} "
            f"(found seq {found_seq} {before}); the store lost data: restore it from a backup or a history "
            f"bundle. `abstractruntime ledger verify {run_id}` shows the damage; the other runs are unaffected.",
            run_id=run_id)
        self.missing_seq = missing_seq
        self.found_seq = found_seq
        self.records = records
        self.cursor = cursor


class PluginError(AbstractRuntimeError):
    """A plugin could not be loaded or registered."""


class DuplicateProviderError(PluginError):
    """Two plugins provide the same name (store, effect handler, ...) and configuration does not choose one."""

    def __init__(self, *, kind: str, name: str, providers: Sequence[str], hint: str = "") -> None:
        super().__init__(f"Duplicate {kind} {name!r} provided by: {', '.join(providers)}."
                         + (f" {hint}" if hint else ""))
        self.kind = kind
        self.name = name
        self.providers = list(providers)


class WorkflowSpecError(ValidationError):
    """A workflow spec is malformed (e.g. the entry node is missing)."""


class WorkflowVersionError(ValidationError):
    """A run is driven with another version of its workflow than the one it started with (nothing changed)."""
