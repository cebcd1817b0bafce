"""One portable file per history bundle, and importing it into another store.

The file is a zip archive::

    bundle.json                 the bundle (export_run_history_bundle(..., include_state=True) for an import)
    manifest.json               {format, version, created_at, root_run_id, artifacts: [ids], missing_artifacts}
    artifacts/<id>.bin          artifact content
    artifacts/<id>.meta         its ArtifactMetadata as JSON

Reading it is bounded (reference defect §17 #21): at most ``max_entries`` entries, ``max_entry_bytes`` per entry
and ``max_total_bytes`` in all, measured while decompressing (sizes announced in the archive are not trusted);
only the names above are accepted (no directories, absolute paths, ``..``, or other files); JSON nested more than
``MAX_JSON_DEPTH`` levels is refused before it is parsed; every artifact's size and sha256 are checked against its
metadata. Importing also verifies the hash chain of every ledger (see :func:`import_history_bundle`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple, Union

from abstractruntime import codec
from abstractruntime.errors import AbstractRuntimeError
from abstractruntime.logs import get_logger
from abstractruntime.models import utc_now_iso
from abstractruntime.storage.base import Capability, StepCommit, backend_for
from abstractruntime_artifacts.store import ArtifactMetadata, is_artifact_ref, validate_artifact_id
from abstractruntime_pluginkit.console import NO_PROGRESS
from abstractruntime_pluginkit.jsonload import JsonTooDeepError, loads_bounded
from abstractruntime_storekit.files import fsync_dir, temp_path

from .bundle import RUN_HISTORY_BUNDLE_VERSION_V1

log = get_logger("abstractruntime.history")

FILE_FORMAT = "abstractruntime.run_history_bundle.zip"
FILE_FORMAT_VERSION = 1
MAX_ENTRIES = 20_000
MAX_ENTRY_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 1024 * 1024 * 1024
#: bundle.json nesting limit: the exporter (orjson) writes at most 254 levels, so every exported file fits
MAX_JSON_DEPTH = 256
_CHAIN_FIELDS = ("record_hash", "prev_hash", "signature")
_NAME = re.compile(r"^(?:bundle\.json|manifest\.json|artifacts/([A-Za-z0-9_-]+)\.(bin|meta))$")


class HistoryBundleError(AbstractRuntimeError, ValueError):
    """A history bundle file is malformed, too large, or cannot be imported here. Nothing was imported."""


# --- writing ------------------------------------------------------------------------------------------------------
def _refs(value: Any, out: Set[str]) -> None:
    stack = [value]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            if is_artifact_ref(cur) and isinstance(cur.get("$artifact"), str):
                out.add(cur["$artifact"])
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)


def bundle_artifact_ids(bundle: Dict[str, Any], artifact_store: Any = None) -> List[str]:
    """Artifacts a bundle needs: every ``$artifact`` reference in it, its workflow snapshot, and (with a store)
    every artifact stored for one of its runs."""
    ids: Set[str] = set()
    _refs(bundle, ids)
    ws = bundle.get("workflow_snapshot")
    if isinstance(ws, dict) and isinstance(ws.get("artifact_id"), str) and ws["artifact_id"]:
        ids.add(ws["artifact_id"])
    run_ids = set(bundle.get("ledgers") or {})
    if artifact_store is not None and run_ids:
        if len(run_ids) <= 8:
            for run_id in run_ids:
                ids.update(m.artifact_id for m in artifact_store.list_by_run(run_id))
        else:  # one listing instead of one per run
            ids.update(m.artifact_id for m in artifact_store.list_all(limit=0) if m.run_id in run_ids)
    return sorted(ids)


def write_history_bundle(
    bundle: Dict[str, Any], path: Union[str, os.PathLike], *, artifact_store: Any = None, progress: Any = None
) -> Path:
    """Write ``bundle`` and the artifacts it needs (read from ``artifact_store``) to one zip file at ``path``.

    Written atomically (temporary file, fsync, rename). Artifacts that are referenced but missing from the
    store are listed in ``manifest.json`` under ``missing_artifacts`` (and logged). Returns the path.
    ``progress`` (``abstractruntime_pluginkit.console.Progress``) is told of each artifact written.
    """
    progress = NO_PROGRESS if progress is None else progress
    if not isinstance(bundle, dict) or bundle.get("version") != RUN_HISTORY_BUNDLE_VERSION_V1:
        raise HistoryBundleError("write_history_bundle expects a version-1 bundle from export_run_history_bundle")
    codec.check_json(bundle, "bundle")
    target = Path(path).expanduser()
    if target.is_dir():
        raise HistoryBundleError(f"{target} is a directory; give the path of the file to write, e.g. "
                                 f"{target / (str(bundle.get('root_run_id') or 'run') + '.history.zip')}")
    target.parent.mkdir(parents=True, exist_ok=True)
    included: List[str] = []
    missing: List[str] = []
    tmp = temp_path(target)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("bundle.json", codec.to_json_bytes(bundle))
            ids = bundle_artifact_ids(bundle, artifact_store) if artifact_store is not None else []
            if artifact_store is None and bundle_artifact_ids(bundle):
                missing = bundle_artifact_ids(bundle)
            advance = progress.stage("writing artifacts", len(ids))
            for aid in ids:
                advance(1)
                try:
                    validate_artifact_id(aid)
                    artifact = artifact_store.load(aid)
                except ValueError:
                    artifact = None
                if artifact is None:
                    missing.append(aid)
                    continue
                meta = artifact.metadata
                if meta.blob_id and hashlib.sha256(artifact.content).hexdigest() != meta.blob_id:
                    raise HistoryBundleError(f"Artifact {aid} in {artifact_store!r} does not match its sha256 "
                                             f"({meta.blob_id}); the store is damaged")
                zf.writestr(f"artifacts/{aid}.bin", artifact.content)
                zf.writestr(f"artifacts/{aid}.meta", json.dumps(meta.to_dict(), ensure_ascii=False))
                included.append(aid)
            manifest = {"format": FILE_FORMAT, "version": FILE_FORMAT_VERSION, "created_at": utc_now_iso(),
                        "root_run_id": bundle.get("root_run_id"), "artifacts": included,
                        "missing_artifacts": missing}
            zf.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    if missing:
        log.warning("history_bundle_missing_artifacts", path=str(target), artifacts=missing)
    return target


# --- reading ------------------------------------------------------------------------------------------------------
def read_history_file(
    path: Union[str, os.PathLike],
    *,
    max_entries: int = MAX_ENTRIES,
    max_entry_bytes: int = MAX_ENTRY_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> Tuple[Dict[str, Any], Dict[str, Tuple[ArtifactMetadata, bytes]]]:
    """Read and check a bundle file: ``(bundle, {artifact_id: (metadata, content)})``.

    Raises :class:`HistoryBundleError` for anything unexpected (see the module docstring).
    """
    p = Path(path).expanduser()
    try:
        zf = zipfile.ZipFile(p)
    except (OSError, zipfile.BadZipFile) as exc:
        raise HistoryBundleError(f"{p} is not a readable history bundle file: {exc}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_entries:
            raise HistoryBundleError(f"{p} has {len(infos)} entries (limit {max_entries})")
        seen: Set[str] = set()
        announced = 0
        for info in infos:
            m = _NAME.match(info.filename)
            if m is None or info.is_dir():
                raise HistoryBundleError(f"{p}: unexpected entry {info.filename!r} (only bundle.json, manifest.json "
                                         f"and artifacts/<id>.bin|.meta are allowed)")
            if info.filename in seen:
                raise HistoryBundleError(f"{p}: duplicate entry {info.filename!r}")
            if info.flag_bits & 0x1:
                raise HistoryBundleError(f"{p}: encrypted entry {info.filename!r}")
            seen.add(info.filename)
            if info.file_size > max_entry_bytes:
                raise HistoryBundleError(f"{p}: entry {info.filename!r} is {info.file_size} bytes "
                                         f"(limit {max_entry_bytes})")
            announced += info.file_size
        if announced > max_total_bytes:
            raise HistoryBundleError(f"{p}: {announced} bytes uncompressed (limit {max_total_bytes})")
        if "bundle.json" not in seen:
            raise HistoryBundleError(f"{p}: bundle.json is missing")

        total = 0

        def read(name: str) -> bytes:
            nonlocal total
            with zf.open(name) as fh:
                data = fh.read(max_entry_bytes + 1)  # never trust the announced size
            if len(data) > max_entry_bytes:
                raise HistoryBundleError(f"{p}: entry {name!r} is larger than {max_entry_bytes} bytes")
            total += len(data)
            if total > max_total_bytes:
                raise HistoryBundleError(f"{p}: more than {max_total_bytes} bytes uncompressed")
            return data

        try:
            bundle = loads_bounded(read("bundle.json"), max_depth=MAX_JSON_DEPTH, what=f"{p}: bundle.json")
        except JsonTooDeepError as exc:
            raise HistoryBundleError(str(exc)) from None
        except (ValueError, zipfile.BadZipFile) as exc:
            raise HistoryBundleError(f"{p}: bundle.json is not valid JSON: {exc}") from None
        if not isinstance(bundle, dict) or bundle.get("version") != RUN_HISTORY_BUNDLE_VERSION_V1:
            raise HistoryBundleError(f"{p}: bundle.json is not a version-{RUN_HISTORY_BUNDLE_VERSION_V1} bundle")

        artifacts: Dict[str, Tuple[ArtifactMetadata, bytes]] = {}
        ids = sorted({_NAME.match(n).group(1) for n in seen if n.startswith("artifacts/")})
        for aid in ids:
            if f"artifacts/{aid}.bin" not in seen or f"artifacts/{aid}.meta" not in seen:
                raise HistoryBundleError(f"{p}: artifact {aid} needs both artifacts/{aid}.bin and .meta")
            try:
                meta = ArtifactMetadata.from_dict(loads_bounded(read(f"artifacts/{aid}.meta"),
                                                                what=f"artifacts/{aid}.meta"))
                content = read(f"artifacts/{aid}.bin")
            except HistoryBundleError:
                raise
            except Exception as exc:
                raise HistoryBundleError(f"{p}: artifact {aid} is unreadable: {exc}") from None
            if meta.artifact_id != aid:
                raise HistoryBundleError(f"{p}: artifacts/{aid}.meta names artifact {meta.artifact_id!r}")
            if len(content) != int(meta.size_bytes):
                raise HistoryBundleError(f"{p}: artifact {aid} has {len(content)} bytes, its metadata says "
                                         f"{meta.size_bytes}")
            if meta.blob_id and hashlib.sha256(content).hexdigest() != meta.blob_id:
                raise HistoryBundleError(f"{p}: artifact {aid} does not match its sha256")
            artifacts[aid] = (meta, content)
    return bundle, artifacts


# --- importing ----------------------------------------------------------------------------------------------------
def _runs_of(bundle: Dict[str, Any], source: Any) -> List[Tuple[Any, list]]:
    states, ledgers = bundle.get("states"), bundle.get("ledgers")
    if not isinstance(states, dict) or not isinstance(ledgers, dict):
        raise HistoryBundleError(f"{source}: the bundle has no run states; export it with "
                                 f"export_run_history_bundle(..., include_state=True)")
    if set(states) != set(ledgers):
        raise HistoryBundleError(f"{source}: runs with a state {sorted(states)} and runs with a ledger "
                                 f"{sorted(ledgers)} differ")
    out = []
    for run_id, ledger in ledgers.items():
        items = ledger.get("items") if isinstance(ledger, dict) else None
        if not isinstance(items, list) or ledger.get("cursor_start") != 1 or len(items) != ledger.get("total"):
            raise HistoryBundleError(f"{source}: the ledger of run {run_id} is not complete (a tail export); "
                                     f"export with ledger_mode='full' to import it")
        try:
            run = codec.run_from_dict(states[run_id])
            records = [codec.record_from_dict(item["record"]) for item in items]
        except Exception as exc:
            raise HistoryBundleError(f"{source}: run {run_id} cannot be read: {exc}") from None
        if run.run_id != run_id or any(r.run_id != run_id for r in records):
            raise HistoryBundleError(f"{source}: run {run_id}'s state or ledger names another run")
        out.append((run, records))
    return out


def _verify_chains(bundle: Dict[str, Any], runtime: Any, source: Any, progress: Any = NO_PROGRESS) -> None:
    """Refuse a bundle whose ledgers carry a hash chain that does not verify (a record changed, deleted, inserted
    or moved after export). Bundles without any chain field (provenance was off) pass; if any record has one, every
    ledger of the bundle must verify, as ``runtime.verify_ledger`` would report it once imported."""
    ledgers = {rid: [item["record"] for item in ledger["items"]] for rid, ledger in bundle["ledgers"].items()}
    if not any(rec.get(f) is not None for rows in ledgers.values() for rec in rows if isinstance(rec, dict)
               for f in _CHAIN_FIELDS):
        return
    verify = getattr(runtime, "verify_ledger_records", None)
    if verify is None:
        raise HistoryBundleError(f"Cannot import {source}: its ledgers are hash-chained but this runtime has no "
                                 f"'provenance' plugin to verify them; nothing was imported (load the provenance "
                                 f"plugin, or pass verify_chain=False to import without checking)")
    advance = progress.stage("verifying ledgers (records)", sum(len(rows) for rows in ledgers.values()))
    for run_id, rows in ledgers.items():
        report = verify(rows)
        advance(len(rows))
        if not report["ok"]:
            first = report["errors"][0]
            raise HistoryBundleError(
                f"Cannot import {source}: the ledger of run {run_id} fails its hash-chain check at record "
                f"#{first['index'] + 1} of {report['count']} ({first['type']}; {len(report['errors'])} error(s)): "
                f"it was changed, deleted from, reordered or damaged after export. Nothing was imported.")


def import_history_bundle(
    path: Union[str, os.PathLike],
    *,
    runtime: Any,
    artifact_store: Any = None,
    max_entries: int = MAX_ENTRIES,
    max_entry_bytes: int = MAX_ENTRY_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    verify_chain: bool = True,
    progress: Any = None,
) -> Dict[str, Any]:
    """Import the runs (checkpoints + complete ledgers) and artifacts of a bundle file into ``runtime``'s stores.

    First the ledgers' hash chains are verified (``verify_chain``; through the provenance plugin's
    ``runtime.verify_ledger_records``, with the configured public key if there is one): a changed, deleted,
    inserted or reordered record raises :class:`HistoryBundleError` and nothing is written. Bundles whose records
    carry no chain (exported with provenance off) are imported as they are.

    Runs keep their ids; if any of them (or an artifact id with other content) already exists in the target,
    :class:`HistoryBundleError` is raised before anything is written. Artifacts go to ``artifact_store``, else
    the runtime's (``abstractruntime_artifacts.artifact_store_for``). Each run is written in one store commit
    (checkpoint and ledger together, records exactly as exported, hash-chain fields included); runs are
    written parents first. Returns ``{root_run_id, run_ids, artifacts, ledger_records}``. ``progress``
    (``abstractruntime_pluginkit.console.Progress``) is told of the ledgers verified, artifacts and records stored.
    """
    progress = NO_PROGRESS if progress is None else progress
    bundle, artifacts = read_history_file(path, max_entries=max_entries, max_entry_bytes=max_entry_bytes,
                                          max_total_bytes=max_total_bytes)
    runs = _runs_of(bundle, path)
    if verify_chain:
        _verify_chains(bundle, runtime, path, progress)

    clashes = []
    for run, _records in runs:
        if runtime.run_store.load(run.run_id) is not None:
            clashes.append(run.run_id)
            continue
        if (runtime.ledger_store.count(run.run_id) if runtime.backend.supports(Capability.LEDGER_PAGING)
                else len(runtime.ledger_store.list(run.run_id))) > 0:
            clashes.append(run.run_id)
    if clashes:
        raise HistoryBundleError(f"Cannot import {path}: run id(s) {', '.join(clashes)} already exist in the "
                                 f"target store; nothing was imported (import into another store, or remove them)")

    target = artifact_store
    if target is None and artifacts:
        from abstractruntime_artifacts import artifact_store_for

        target = artifact_store_for(runtime)
        if target is None:
            raise HistoryBundleError(f"Cannot import {path}: it holds {len(artifacts)} artifact(s) but the runtime "
                                     f"has no artifact store (pass artifact_store=..., or set one on the runtime)")
    to_store = []
    for aid, (meta, content) in artifacts.items():
        existing = target.get_metadata(aid) if target.exists(aid) else None
        if existing is not None:
            if existing.blob_id and existing.blob_id == meta.blob_id:
                continue  # the same content is already there
            raise HistoryBundleError(f"Cannot import {path}: artifact {aid} already exists in {target!r} with other "
                                     f"content; nothing was imported")
        to_store.append((meta, content))

    advance = progress.stage("storing artifacts", len(to_store))
    for meta, content in to_store:
        target.store(content, content_type=meta.content_type, run_id=meta.run_id, tags=dict(meta.tags),
                     artifact_id=meta.artifact_id)
        advance(1)
    commit = backend_for(runtime.run_store, runtime.ledger_store).commit_step
    n_records = 0
    advance = progress.stage("importing runs (records)", sum(len(records) for _run, records in runs))
    for run, records in _parents_first(runs):
        commit(StepCommit(run=run, run_json=codec.encode_run(run), records=records,
                          record_jsons=[codec.encode_record(r) for r in records], expected_revision=None))
        n_records += len(records)
        advance(len(records))
    log.info("history_imported", path=str(path), runs=len(runs), records=n_records, artifacts=len(to_store))
    return {"root_run_id": bundle.get("root_run_id"), "run_ids": [r.run_id for r, _ in runs],
            "artifacts": sorted(artifacts), "ledger_records": n_records}


def _parents_first(runs: List[Tuple[Any, list]]) -> Iterator[Tuple[Any, list]]:
    by_id = {run.run_id: (run, records) for run, records in runs}
    done: Set[str] = set()

    def visit(run_id: str, depth: int = 0) -> Iterator[Tuple[Any, list]]:
        if run_id in done or depth > len(by_id):
            return
        run, records = by_id[run_id]
        if run.parent_run_id in by_id and run.parent_run_id not in done:
            yield from visit(run.parent_run_id, depth + 1)
        if run_id not in done:
            done.add(run_id)
            yield run, records

    for run_id in by_id:
        yield from visit(run_id)


__all__ = [
    "FILE_FORMAT",
    "HistoryBundleError",
    "write_history_bundle",
    "read_history_file",
    "import_history_bundle",
    "bundle_artifact_ids",
]
