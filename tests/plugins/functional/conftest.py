"""Fixtures of the durable-functions tests: ``fn_flows`` (the workflows and steps, imported by child processes
too) on sys.path, a clean environment, and a store per backend (LMDB in a temp dir, PostgreSQL from
tests/postgres_support.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from postgres_support import pg_dsn, postgres_server, psycopg_installed  # noqa: E402,F401  (fixtures)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("ABSTRACTRUNTIME_") and key != "ABSTRACTRUNTIME_TEST_POSTGRES_DSN":
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def provider(tmp_path, monkeypatch):
    """The directory of the fake payment provider the ``charge`` step talks to (de-duplicates by idempotency key)."""
    path = tmp_path / "provider"
    path.mkdir()
    monkeypatch.setenv("FN_TEST_PROVIDER", str(path))
    return path


@pytest.fixture(params=["lmdb", "postgres"])
def store_url(request, tmp_path):
    if request.param == "lmdb":
        return f"lmdb://{tmp_path}/db"
    return request.getfixturevalue("pg_dsn")
