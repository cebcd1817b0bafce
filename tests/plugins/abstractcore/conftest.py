"""Fixtures for the AbstractCore integration tests: a scripted OpenAI-compatible server on 127.0.0.1 (no network)
and a clean environment. Skipped as a whole when the ``abstractcore`` package is not installed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import importlib.util  # noqa: E402

if importlib.util.find_spec("abstractcore") is None:  # not importorskip: importing it here would be unguarded
    collect_ignore_glob = ["test_ac_*.py"]

from fake_llm_server import MODEL, FakeLLMServer  # noqa: E402,F401  (MODEL: tests import it from fake_llm_server)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("ABSTRACTRUNTIME_", "ABSTRACT_ENABLE_", "ABSTRACT_WORKER_TOKEN")):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def llm_server():
    server = FakeLLMServer(model=MODEL).start()
    try:
        yield server
    finally:
        server.stop()
