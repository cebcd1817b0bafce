"""Shared fixtures for the kernel tests: real in-memory stores, no mocks of our own code."""

from __future__ import annotations

import os

import pytest

from abstractruntime import Runtime
from abstractruntime_inmemory.store import MemoryBackend


@pytest.fixture(autouse=True)
def _clean_abstractruntime_env(monkeypatch):
    """Configuration from the developer's environment must not leak into the tests."""
    for key in list(os.environ):
        if key.startswith("ABSTRACTRUNTIME_"):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def runtime(backend) -> Runtime:
    """A runtime on a shared in-memory backend (atomic step commits)."""
    return Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store)
