"""Runtime by composition: the store backend and its declared capabilities, the stash for plugin state, plugin
methods bound visibly on the instance."""

from __future__ import annotations

import inspect
import threading

import pytest

from abstractruntime import Capability, Runtime, Stash, StashKey, StoreBackend
from abstractruntime.errors import StoreError
from abstractruntime.storage.base import SplitBackend, backend_for, declared_capabilities
from abstractruntime_inmemory.store import InMemoryLedgerStore, InMemoryRunStore, MemoryBackend


def test_the_runtime_commits_through_the_backend_its_store_declares():
    rt = Runtime.from_config({"store": "memory://"})
    assert isinstance(rt.backend, MemoryBackend) and rt.backend.run_store is rt.run_store
    assert rt.backend.supports(Capability.IDEMPOTENCY_INDEX) and not rt.backend.supports(Capability.LEASES)


def test_a_mixed_pair_gets_a_split_backend_with_each_side_s_capabilities():
    runs, ledger = InMemoryRunStore(), InMemoryLedgerStore()  # reference style: two backends
    backend = backend_for(runs, ledger)
    assert isinstance(backend, SplitBackend)
    assert backend.capabilities == {Capability.REVISION_PROBE, Capability.RUN_QUERIES, Capability.EVENT_INDEX,
                                    Capability.IDEMPOTENCY_INDEX, Capability.LEDGER_PAGING}
    assert declared_capabilities(object()) == frozenset()


def test_a_backend_that_is_no_store_backend_is_refused_with_a_clear_error():
    class NotABackend:
        def commit_step(self, commit):
            pass

    class Facade:
        backend = NotABackend()

    with pytest.raises(StoreError, match="must subclass abstractruntime.StoreBackend"):
        backend_for(Facade(), Facade())


def test_the_stash_creates_each_value_once_even_from_many_threads():
    stash, key, calls = Stash(), StashKey[list](), []

    def factory():
        calls.append(1)
        return []

    threads = [threading.Thread(target=lambda: stash.setdefault_factory(key, factory).append(1)) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and stash[key] == [1] * 16 and key in stash
    other = StashKey[int]()
    assert stash.get(other) is None and stash.setdefault(other, 3) == 3
    del stash[other]
    assert other not in stash


def test_each_runtime_and_each_backend_has_its_own_stash():
    a, b = Runtime.from_config({"store": "memory://"}), Runtime.from_config({"store": "memory://"})
    key = StashKey[str]()
    a.stash[key] = "a"
    assert b.stash.get(key) is None
    assert a.backend.stash is a.backend.stash and a.backend.stash is not b.backend.stash
    assert isinstance(a.backend, StoreBackend)


def test_plugin_methods_are_visible_with_their_own_signature_and_docstring():
    rt = Runtime.from_config({"store": "memory://"})
    methods = rt.plugin_methods()
    assert {"create_snapshot", "restore_snapshot", "fork_run", "verify_ledger", "get_node_traces",
            "get_limit_status", "list_evidence"} <= set(methods)
    assert "create_snapshot" in dir(rt)
    from abstractruntime_snapshots import create_snapshot

    bound = rt.create_snapshot
    assert bound.__doc__ == create_snapshot.__doc__ and bound.__name__ == "create_snapshot"
    params = list(inspect.signature(bound).parameters)
    assert params[0] == "run_id" and "runtime" not in params
    assert inspect.signature(bound).parameters["name"].kind is inspect.Parameter.KEYWORD_ONLY


def test_a_missing_method_says_its_plugin_may_not_be_installed():
    rt = Runtime.from_config({"store": "memory://", "plugins": {"block": ["snapshots"]}})
    with pytest.raises(AttributeError, match="create_snapshot.*is the plugin that provides it installed"):
        rt.create_snapshot  # noqa: B018
