"""Store URLs for the operations tests (retry, schedules, moving runs): LMDB and SQLite in a temporary directory,
PostgreSQL from tests/postgres_support.py (a fresh database per test; skipped without a server, failed in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

EMBEDDED = ("lmdb", "sqlite")
ALL = EMBEDDED + ("postgres",)


def store_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str = "store") -> str:
    if kind == "lmdb":
        return f"lmdb://{tmp_path / name}"
    if kind == "sqlite":
        return f"sqlite://{tmp_path / (name + '.db')}"
    if kind == "postgres":
        server = request.getfixturevalue("postgres_server")
        return server.fresh_dsn(f"{request.node.nodeid}:{name}")
    raise ValueError(kind)
