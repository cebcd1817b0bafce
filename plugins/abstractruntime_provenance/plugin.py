"""The hooks: chain (and optionally sign) every ledger record a runtime commits; ``runtime.verify_ledger``."""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Dict, List, Optional

from attrs import frozen

from abstractruntime import hookimpl
from abstractruntime.descriptors import CliCommandDescriptor, RuntimeMethodDescriptor
from abstractruntime.errors import ConfigurationError
from abstractruntime.logs import get_logger
from abstractruntime.models import StepRecord

from .chain import chain_records, current_head, verify_run
from .hashing import DEFAULT_ALGORITHM, get_hasher
from .signing import configured_signing_key, key_fingerprint, load_public_key, signer_for

PLUGIN_NAME = "provenance"
OPTION_KEYS = ("enabled", "algorithm", "signing_key_path", "public_key_path")

log = get_logger("abstractruntime.provenance")


@frozen
class ProvenanceConfig:
    """What the plugin resolved from ``[abstractruntime.plugin_options.provenance]`` for one runtime."""

    algorithm: str
    signer: Optional[Callable[[str], str]] = None
    key_fingerprint: Optional[str] = None
    enabled: bool = True


_CONFIGS: "weakref.WeakKeyDictionary[Any, ProvenanceConfig]" = weakref.WeakKeyDictionary()
_CONFIGS_LOCK = threading.Lock()


def _options(runtime: Any) -> Dict[str, Any]:
    settings = getattr(runtime, "settings", None)
    opts = settings.options_for(PLUGIN_NAME) if settings is not None else {}
    unknown = sorted(set(opts) - set(OPTION_KEYS))
    if unknown:
        raise ConfigurationError(
            f"Unknown plugin_options.provenance key(s) {unknown}; valid keys: {list(OPTION_KEYS)}"
        )
    return opts


def resolve_config(runtime: Any) -> ProvenanceConfig:
    """Read and check the plugin's options (and load the signing key) for ``runtime``."""
    opts = _options(runtime)
    enabled = opts.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigurationError(f"plugin_options.provenance.enabled must be true or false, got {enabled!r}")
    if not enabled:
        return ProvenanceConfig(DEFAULT_ALGORITHM, enabled=False)
    algorithm = get_hasher(opts.get("algorithm")).name
    key = configured_signing_key(opts.get("signing_key_path"))
    if key is None:
        return ProvenanceConfig(algorithm)
    fingerprint = key_fingerprint(key)
    log.info("provenance_signing_enabled", algorithm=algorithm, key_fingerprint=fingerprint)
    return ProvenanceConfig(algorithm, signer_for(key), fingerprint)


def config_for(runtime: Any) -> ProvenanceConfig:
    """The runtime's resolved configuration, computed once (when the runtime is built) and then cached."""
    cfg = _CONFIGS.get(runtime)
    if cfg is None:
        with _CONFIGS_LOCK:
            cfg = _CONFIGS.get(runtime)
            if cfg is None:
                cfg = resolve_config(runtime)
                _CONFIGS[runtime] = cfg
    return cfg


def configured_public_key(runtime: Any) -> Any:
    """The public key named by ``plugin_options.provenance.public_key_path``, else None."""
    path = _options(runtime).get("public_key_path")
    return load_public_key(path) if path else None


@hookimpl
def abstractruntime_runtime_created(runtime: Any) -> None:
    """Check the options and load the signing key now: a bad configuration fails ``Runtime(...)``."""
    config_for(runtime)


@hookimpl(trylast=True)  # after any other plugin that sets fields: the hash must cover the final record
def abstractruntime_prepare_ledger_records(runtime: Any, run_id: str, records: List[StepRecord]) -> None:
    cfg = config_for(runtime)
    if not cfg.enabled:
        return
    # The kernel calls this inside the run's single-writer section, so the stored head cannot move under us.
    head = current_head(runtime.ledger_store, run_id)
    chain_records(records, head, algorithm=cfg.algorithm, signer=cfg.signer)


def _verify_ledger(runtime: Any, run_id: str, public_key: Any = None) -> Dict[str, Any]:
    return verify_run(runtime, run_id, public_key=public_key)


@hookimpl
def abstractruntime_register_runtime_methods() -> List[RuntimeMethodDescriptor]:
    return [
        RuntimeMethodDescriptor(
            "verify_ledger", _verify_ledger,
            "Verify a run's ledger hash chain (and Ed25519 signatures with a public key); returns a report",
        )
    ]


def _cli_verify_args(parser: Any) -> None:
    parser.add_argument("run_id")
    parser.add_argument("--public-key", help="PEM public key to check signatures with (default: configuration)")


def _cli_verify(args: Any, runtime: Any) -> int:
    """``abstractruntime ledger verify RUN_ID``: exit 0 if the chain verifies, 1 with the first bad record if not."""
    import json

    runtime.get_state(args.run_id)  # unknown run -> clear error, exit 2
    public_key = load_public_key(args.public_key) if args.public_key else None
    report = _verify_ledger(runtime, args.run_id, public_key)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    elif report["ok"]:
        print(f"ok: {report['count']} records, head {report['head_hash']}")
    else:
        first = next((e for e in report["errors"] if e.get("index") == report["first_bad_index"]), {})
        print(f"TAMPERED: first bad record #{report['first_bad_index']} ({first.get('type')}); "
              f"{len(report['errors'])} error(s) in {report['count']} records")
        for err in report["errors"]:
            print("  " + json.dumps(err, default=str))
    return 0 if report["ok"] else 1


@hookimpl
def abstractruntime_register_cli_commands() -> List[CliCommandDescriptor]:
    return [CliCommandDescriptor("ledger verify", "verify a run's hash chain (exit 1 and the first bad record "
                                 "if it was tampered with)", _cli_verify_args, _cli_verify)]
