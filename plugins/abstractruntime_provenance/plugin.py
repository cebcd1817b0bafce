"""The hooks: chain (and optionally sign) every ledger record a runtime commits; ``runtime.verify_ledger``."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from attrs import frozen

from abstractruntime import Capability, StashKey, hookimpl
from abstractruntime.descriptors import CliCommandDescriptor, RuntimeMethodDescriptor
from abstractruntime.errors import ConcurrentModificationError
from abstractruntime.logs import get_logger
from abstractruntime.models import StepRecord
from abstractruntime_pluginkit import plugin_options
from abstractruntime.storage.base import CommitView, Precondition

from .chain import _stamp, current_head, verify_records, verify_run
from .hashing import DEFAULT_ALGORITHM, get_hasher
from .signing import configured_signing_key, key_fingerprint, load_public_key, signer_for

PLUGIN_NAME = "provenance"

log = get_logger("abstractruntime.provenance")


@frozen
class ProvenanceOptions:
    """``[abstractruntime.plugin_options.provenance]``."""

    enabled: bool = True
    algorithm: Optional[str] = None
    signing_key_path: Optional[str] = None
    public_key_path: Optional[str] = None


@frozen
class ProvenanceConfig:
    """What the plugin resolved from its options for one runtime."""

    algorithm: str
    signer: Optional[Callable[[str], str]] = None
    key_fingerprint: Optional[str] = None
    enabled: bool = True


_CONFIG = StashKey[ProvenanceConfig]()


class LedgerHeadMovedError(ConcurrentModificationError):
    """Hash-chained records were computed against a ledger head that is no longer the run's last record: another
    writer (e.g. a ``cancel_run`` from another process during a step) appended first. Nothing was written, so the
    chain never forks; reload and retry (the kernel does)."""

    def __init__(self, *, run_id: str, expected_prev_hash: Optional[str], head_hash: Optional[str]) -> None:
        super().__init__(
            run_id=run_id, expected=None, actual=None,
            message=f"The ledger of run {run_id} moved on while this writer was committing: its records chain to "
                    f"{expected_prev_hash!r}, the last stored record is {head_hash!r}. Nothing was written; reload "
                    f"and retry.",
        )
        self.expected_prev_hash = expected_prev_hash
        self.head_hash = head_hash


def resolve_config(runtime: Any) -> ProvenanceConfig:
    """Read and check the plugin's options (and load the signing key) for ``runtime``."""
    opts = plugin_options(runtime, PLUGIN_NAME, ProvenanceOptions)
    if not opts.enabled:
        return ProvenanceConfig(DEFAULT_ALGORITHM, enabled=False)
    algorithm = get_hasher(opts.algorithm).name
    key = configured_signing_key(opts.signing_key_path)
    if key is None:
        return ProvenanceConfig(algorithm)
    fingerprint = key_fingerprint(key)
    log.info("provenance_signing_enabled", algorithm=algorithm, key_fingerprint=fingerprint)
    return ProvenanceConfig(algorithm, signer_for(key), fingerprint)


def config_for(runtime: Any) -> ProvenanceConfig:
    """The runtime's resolved configuration, computed once (when the runtime is built) and kept in its stash."""
    return runtime.stash.setdefault_factory(_CONFIG, lambda: resolve_config(runtime))


def configured_public_key(runtime: Any) -> Any:
    """The public key named by ``plugin_options.provenance.public_key_path``, else None."""
    path = plugin_options(runtime, PLUGIN_NAME, ProvenanceOptions).public_key_path
    return load_public_key(path) if path else None


def extends_head(run_id: str, prev_hash: Optional[str]) -> Precondition:
    """The commit precondition that keeps a chain from forking: the first chained record of ``run_id`` in the
    commit (whose ``prev_hash`` is given) must extend the run's last stored record, read by the store inside its
    write transaction; else :class:`LedgerHeadMovedError` (the kernel reloads and retries)."""

    def check(view: CommitView) -> None:
        if view.last_hash is not None:  # the store knows it without decoding the record
            head = view.last_hash(run_id)
        else:
            last = view.last_record(run_id)
            head = last.get("record_hash") if last is not None else None
        if prev_hash != head:
            raise LedgerHeadMovedError(run_id=run_id, expected_prev_hash=prev_hash, head_hash=head)

    return check


@hookimpl
def abstractruntime_runtime_created(runtime: Any) -> None:
    """Check the options and load the signing key now: a bad configuration fails ``Runtime(...)``."""
    config_for(runtime)


@hookimpl(trylast=True)  # after any other plugin that sets fields: the hash must cover the final record
def abstractruntime_prepare_ledger_records(runtime: Any, run_id: str,
                                           records: List[StepRecord]) -> Optional[Precondition]:
    cfg = config_for(runtime)
    if not cfg.enabled:
        return None
    # The head is known or read here, outside the store's transaction: another writer (a cancel_run from another
    # process) may append before this commit is written, so the store re-checks it inside its transaction.
    head = chain_head(runtime, run_id)
    desc, signer, last = get_hasher(cfg.algorithm), cfg.signer, head
    for record in records:  # (chain_records, inline: at every commit with records)
        last = _stamp(record, last, desc, signer)
    return extends_head(run_id, head)


def chain_head(runtime: Any, run_id: str) -> Optional[str]:
    """The ``record_hash`` to chain the run's next records on: the store's hint when it has one (a backend may
    offer ``ledger_head_hint(run_id) -> (seq, record_hash) | None``, what it last wrote: no read), else the last
    stored record's. Either way the commit's :func:`extends_head` precondition checks it in the transaction."""
    hint = getattr(runtime.backend, "ledger_head_hint", None)
    known = hint(run_id) if callable(hint) else None
    if known is not None:
        return known[1]
    return current_head(runtime.ledger_store, run_id, paging=runtime.backend.supports(Capability.LEDGER_PAGING))


def _verify_ledger(runtime: Any, run_id: str, public_key: Any = None) -> Dict[str, Any]:
    return verify_run(runtime, run_id, public_key=public_key)


@hookimpl
def abstractruntime_register_runtime_methods() -> List[RuntimeMethodDescriptor]:
    return [
        RuntimeMethodDescriptor(
            "verify_ledger", _verify_ledger,
            "Verify a run's ledger hash chain (and Ed25519 signatures with a public key); returns a report",
        ),
        RuntimeMethodDescriptor(
            "verify_ledger_records", verify_records,
            "Verify the hash chain of one run's ledger records given in order (not read from the store), as "
            "verify_ledger would once they are stored; returns the same report",
        ),
    ]


def _cli_verify_args(parser: Any) -> None:
    parser.add_argument("run_id")
    parser.add_argument("--public-key", help="PEM public key to check signatures with (default: configuration)")


def _cli_verify(args: Any, runtime: Any) -> int:
    """``abstractruntime ledger verify RUN_ID``: exit 0 if the chain verifies, 1 with the first bad record if not."""
    import json

    from abstractruntime_pluginkit.console import progress_display

    runtime.get_state(args.run_id)  # unknown run -> clear error, exit 2
    public_key = load_public_key(args.public_key) if args.public_key else None
    paging = runtime.backend.supports(Capability.LEDGER_PAGING)
    with progress_display() as bars:  # drawn on stderr when it is a terminal (a long ledger takes a while)
        advance = bars.stage("verifying the ledger", runtime.ledger_store.count(args.run_id) if paging else None)
        report = verify_run(runtime, args.run_id, public_key=public_key, progress=advance)
    # Records are numbered from 1 as `ledger show` numbers them ("record"); "index" stays the 0-based position of
    # the reference's report.
    for err in report["errors"]:
        err["record"] = err["index"] + 1
    report["first_bad_record"] = None if report["first_bad_index"] is None else report["first_bad_index"] + 1
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    elif report["ok"]:
        print(f"ok: {report['count']} records, head {report['head_hash']}")
    else:
        first = next((e for e in report["errors"] if e.get("index") == report["first_bad_index"]), {})
        print(f"TAMPERED: first bad record #{report['first_bad_record']} ({first.get('type')}; numbered as in "
              f"`ledger show`); {len(report['errors'])} error(s) in {report['count']} records")
        for err in report["errors"]:
            print("  " + json.dumps(err, default=str))
    return 0 if report["ok"] else 1


@hookimpl
def abstractruntime_register_cli_commands() -> List[CliCommandDescriptor]:
    return [CliCommandDescriptor("ledger verify", "verify a run's hash chain (exit 1 and the first bad record "
                                 "if it was tampered with)", _cli_verify_args, _cli_verify, store="read")]
