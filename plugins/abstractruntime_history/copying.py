"""Copying a whole store: ``abstractruntime store copy SRC DST`` (e.g. LMDB -> PostgreSQL when a team outgrows one
machine) and :func:`copy_store`.

Every run of the source -- checkpoint and complete ledger, records exactly as stored (hash chains and signatures
included) -- is written to the target in one commit per run, parents first, and every artifact of the source's
artifact store is copied. The source is opened read-only. Before anything is written the target is checked: a run
it already has with the same checkpoint and ledger is skipped (so an interrupted copy can be run again), one that
differs stops the copy with :class:`StoreCopyError` and nothing is written. A verify pass then reads every run
and artifact back from the target and compares it with the source.

Stop the workers and schedulers of the source first: runs that change during the copy fail the verify pass.
Snapshots and the command inbox are not copied.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from abstractruntime import codec
from abstractruntime.errors import AbstractRuntimeError
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState
from abstractruntime.storage.base import StepCommit
from abstractruntime_pluginkit.queries import answers_run_index

from .moving import open_runtime, redact_url, same_run

log = get_logger("abstractruntime.history")

MAX_RUNS = 1_000_000_000
#: ``progress(phase, done, total)``: ``phase`` is "copy" or "verify"
Progress = Callable[[str, int, int], None]


class StoreCopyError(AbstractRuntimeError):
    """A store could not be copied; the message says what was written."""


def _run_ids(runtime: Any) -> List[str]:
    if not answers_run_index(runtime.run_store):
        raise StoreCopyError(f"The source store ({type(runtime.run_store).__name__}) cannot list its runs "
                             f"(Capability.RUN_QUERIES); nothing was copied")
    return [r["run_id"] for r in runtime.run_store.list_run_index(limit=MAX_RUNS)]


def _parents_first(runs: List[RunState]) -> List[RunState]:
    by_id = {r.run_id: r for r in runs}

    def depth(run: RunState) -> int:
        d, seen = 0, {run.run_id}
        while run.parent_run_id in by_id and run.parent_run_id not in seen:
            run = by_id[run.parent_run_id]
            seen.add(run.run_id)
            d += 1
        return d

    return sorted(runs, key=depth)


def _artifact_stores(src: Any, dst: Any) -> Tuple[Any, Any]:
    from abstractruntime_artifacts import artifact_store_for

    return artifact_store_for(src), artifact_store_for(dst)


def copy_runtime_store(src: Any, dst: Any, *, progress: Optional[Progress] = None) -> Dict[str, Any]:
    """Copy every run and artifact of ``src``'s store into ``dst``'s (two runtimes) and verify; see the module
    docstring. Returns ``{runs, copied, skipped, ledger_records, artifacts, verified, mismatches}``."""
    tick = progress or (lambda phase, done, total: None)
    ids = _run_ids(src)
    runs: List[Tuple[RunState, List[Dict[str, Any]]]] = []
    skipped, conflicts = 0, []
    for rid in ids:
        run = src.run_store.load(rid)
        if run is None:
            continue
        ledger = src.get_ledger(rid)
        existing = dst.run_store.load(rid)
        if existing is None and not dst.get_ledger(rid):
            runs.append((run, ledger))
        elif same_run(existing, run) and dst.get_ledger(rid) == ledger:
            skipped += 1
        else:
            conflicts.append(rid)
    if conflicts:
        raise StoreCopyError(f"The target already has {len(conflicts)} run(s) that differ from the source's "
                             f"(e.g. {', '.join(conflicts[:5])}); nothing was copied. Copy into an empty store.")
    src_art, dst_art = _artifact_stores(src, dst)
    metas = src_art.list_all(limit=0) if src_art is not None else []
    if metas and dst_art is None:
        raise StoreCopyError(f"The source has {len(metas)} artifact(s) but the target has no artifact store; "
                             f"nothing was copied")
    ledger_of = {run.run_id: ledger for run, ledger in runs}
    total = len(runs) + len(metas)
    done = n_records = 0
    tick("copy", 0, total)
    for meta in metas:
        if not dst_art.exists(meta.artifact_id):
            artifact = src_art.load(meta.artifact_id)
            if artifact is not None:
                dst_art.store(artifact.content, content_type=meta.content_type, run_id=meta.run_id,
                              tags=dict(meta.tags or {}), artifact_id=meta.artifact_id)
        done += 1
        tick("copy", done, total)
    commit = dst.backend.commit_step
    for run in _parents_first([r for r, _ in runs]):
        records = [codec.record_from_dict(d) for d in ledger_of[run.run_id]]
        commit(StepCommit(run=run, run_json=codec.encode_run(run), records=records,
                          record_jsons=[codec.encode_record(r) for r in records], expected_revision=None))
        n_records += len(records)
        done += 1
        tick("copy", done, total)
    mismatches = verify_copy(src, dst, ids, metas, src_art, dst_art, tick)
    log.info("store_copied", runs=len(runs), skipped=skipped, records=n_records, artifacts=len(metas),
             mismatches=len(mismatches))
    return {"runs": len(ids), "copied": len(runs), "skipped": skipped, "ledger_records": n_records,
            "artifacts": len(metas), "verified": len(ids) + len(metas) - len(mismatches), "mismatches": mismatches}


def verify_copy(src: Any, dst: Any, ids: List[str], metas: List[Any], src_art: Any, dst_art: Any,
                tick: Progress) -> List[str]:
    """Read every run (checkpoint, ledger) and artifact back from ``dst`` and compare with ``src``: what differs."""
    bad: List[str] = []
    total = len(ids) + len(metas)
    tick("verify", 0, total)
    for i, rid in enumerate(ids, 1):
        if not same_run(dst.run_store.load(rid), src.run_store.load(rid)) or dst.get_ledger(rid) != src.get_ledger(rid):
            bad.append(f"run {rid}")
        tick("verify", i, total)
    for j, meta in enumerate(metas, len(ids) + 1):
        copied = dst_art.get_metadata(meta.artifact_id) if dst_art is not None else None
        if copied is None or (meta.blob_id and copied.blob_id != meta.blob_id) or copied.size_bytes != meta.size_bytes:
            bad.append(f"artifact {meta.artifact_id}")
        tick("verify", j, total)
    return bad


@contextmanager
def rich_progress(enabled: bool = True) -> Iterator[Progress]:
    """A ``rich`` progress bar on stderr (one line per phase); a no-op callback when not ``enabled``."""
    if not enabled:
        yield lambda phase, done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    tasks: Dict[str, Any] = {}
    with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
             console=Console(stderr=True)) as bar:
        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def copy_store(source: str, target: str, *, runtime: Any = None, progress: bool = False) -> Dict[str, Any]:
    """Copy the store at URL ``source`` (opened read-only) into the store at URL ``target``, both opened with
    ``runtime``'s configuration (default: the environment's); a ``rich`` progress bar on stderr with ``progress``.
    Returns what :func:`copy_runtime_store` returns, with ``from`` and ``to`` (passwords hidden)."""
    from abstractruntime import Runtime

    reference = runtime if runtime is not None else Runtime.from_config(None, store="memory://")
    opened: List[Any] = []
    try:
        src = open_runtime(reference, source, read_only=True)
        opened.append(src)
        dst = open_runtime(reference, target)
        opened.append(dst)
        with rich_progress(progress) as tick:
            result = copy_runtime_store(src, dst, progress=tick)
    finally:
        for rt in reversed(opened):
            rt.close()
        if runtime is None:
            reference.close()
    result.update({"from": redact_url(source), "to": redact_url(target)})
    return result


__all__ = ["copy_store", "copy_runtime_store", "verify_copy", "StoreCopyError", "rich_progress"]
