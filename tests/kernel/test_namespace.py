"""The namespace overlays: the 0.4.2 import paths whose code lives in plugins resolve through the package declared
under ``abstractruntime.namespace``, lazily, to the same objects; the kernel itself imports no plugin."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


def test_a_reference_module_path_is_the_overlay_module_itself():
    alias = importlib.import_module("abstractruntime.storage.sqlite")
    real = importlib.import_module("abstractruntime_compat.storage.sqlite")
    assert alias is real
    from abstractruntime.storage.sqlite import SqliteRunStore
    from abstractruntime_sqlite.store import SqliteRunStore as defined

    assert SqliteRunStore is defined  # no copy of any class


def test_submodules_of_an_aliased_package_are_never_copies():
    from abstractruntime.core import models as by_reference_path
    from abstractruntime_compat.core import models as by_overlay_path

    assert by_reference_path is by_overlay_path
    import abstractruntime.scheduler.registry as registry

    assert registry.WorkflowRegistry is importlib.import_module("abstractruntime_pluginkit").WorkflowRegistry


def test_root_names_resolve_lazily_and_appear_in_all_and_dir():
    import abstractruntime

    assert abstractruntime.InMemoryRunStore.__module__ == "abstractruntime_inmemory.store"
    names = abstractruntime.__all__
    assert {"Runtime", "StoreBackend", "SqliteRunStore", "Scheduler", "WorkflowRegistry"} <= set(names)
    assert len(names) == len(set(names))
    assert "create_scheduled_runtime" in dir(abstractruntime)


def test_an_unknown_name_or_module_is_a_plain_error():
    import abstractruntime

    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        abstractruntime.NoSuchThing  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("abstractruntime.no_such_module")


def test_the_storage_package_exports_exactly_the_reference_list():
    import abstractruntime.storage as storage

    assert sorted(storage.__all__) == sorted([
        "RunStore", "LedgerStore", "QueryableRunStore", "InMemoryRunStore", "InMemoryLedgerStore", "JsonFileRunStore",
        "JsonlLedgerStore", "HashChainedLedgerStore", "verify_ledger_chain", "ObservableLedgerStore",
        "ObservableLedgerStoreProtocol", "OffloadingRunStore", "OffloadingLedgerStore", "offload_large_values",
        "Snapshot", "SnapshotStore", "InMemorySnapshotStore", "JsonSnapshotStore"])


def test_importing_the_kernel_loads_no_plugin():
    code = ("import sys, abstractruntime; from abstractruntime import Runtime, StepPlan; "
            "print(sorted(m for m in sys.modules if m.startswith('abstractruntime_')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_dash_m_runs_a_reference_module_path():
    out = subprocess.run([sys.executable, "-m", "abstractruntime.cli", "--store", "memory://", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "usage: abstractruntime" in out.stdout
