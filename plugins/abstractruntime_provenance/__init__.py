"""Builtin plugin ``provenance``: a tamper-evident, optionally signed, ledger.

Every ledger record a runtime commits gets ``prev_hash`` (the previous record's hash), ``record_hash`` (a hash
of the whole record, SHA-256 by default, per reference §11) and, with a signing key, ``signature`` (Ed25519 over
``record_hash``). ``runtime.verify_ledger(run_id)`` / :func:`verify_ledger_chain` pinpoint the first changed,
deleted or reordered record. Options: ``[abstractruntime.plugin_options.provenance]`` ``algorithm``,
``signing_key_path``, ``public_key_path``; see docs/provenance.md.
"""

from __future__ import annotations

from .chain import (
    ChainVerifier,
    HashChainedLedgerStore,
    chain_records,
    current_head,
    iter_ledger,
    stamp_record,
    verify_ledger_chain,
    verify_records,
    verify_run,
)
from .hashing import (
    DEFAULT_ALGORITHM,
    HASHERS,
    HasherDescriptor,
    canonical_json,
    compute_record_hash,
    get_hasher,
    register_hasher,
    split_record_hash,
)
from .plugin import (
    LedgerHeadMovedError,
    ProvenanceConfig,
    extends_head,
    abstractruntime_prepare_ledger_records,
    abstractruntime_register_cli_commands,
    abstractruntime_register_runtime_methods,
    abstractruntime_runtime_created,
    config_for,
)
from .signing import SIGNING_KEY_ENV, load_public_key, load_signing_key

__all__ = [
    "LedgerHeadMovedError",
    "extends_head",
    "ChainVerifier",
    "DEFAULT_ALGORITHM",
    "HASHERS",
    "HashChainedLedgerStore",
    "HasherDescriptor",
    "ProvenanceConfig",
    "SIGNING_KEY_ENV",
    "abstractruntime_prepare_ledger_records",
    "abstractruntime_register_runtime_methods",
    "abstractruntime_runtime_created",
    "canonical_json",
    "chain_records",
    "compute_record_hash",
    "config_for",
    "current_head",
    "get_hasher",
    "iter_ledger",
    "load_public_key",
    "load_signing_key",
    "register_hasher",
    "split_record_hash",
    "stamp_record",
    "verify_ledger_chain",
    "verify_records",
    "verify_run",
]
