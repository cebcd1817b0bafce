"""examples/03_llm_agent.py: explains itself without a server; runs its agent against the fake server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fake_llm_server import MODEL

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "03_llm_agent.py"


def run_example(env_extra, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
    env.update(env_extra)
    return subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_without_a_server_it_says_how_to_configure_one():
    proc = run_example({})
    assert proc.returncode == 0, proc.stderr
    assert "ABSTRACTRUNTIME_LLM_BASE_URL" in proc.stdout and "ABSTRACTRUNTIME_LLM_MODEL" in proc.stdout


def test_against_a_model_server(llm_server):
    llm_server.push(
        {"tool_calls": [{"name": "multiply", "arguments": {"a": 17, "b": 23}, "id": "m1"}]},
        {"tool_calls": [{"name": "add", "arguments": json.dumps({"a": 391, "b": 4}), "id": "a1"}]},
        {"content": "17 * 23 + 4 = 395"})
    proc = run_example({"ABSTRACTRUNTIME_LLM_BASE_URL": llm_server.base_url, "ABSTRACTRUNTIME_LLM_MODEL": MODEL},
                       "What is 17 * 23 + 4?")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "answer: 17 * 23 + 4 = 395" in proc.stdout
    assert "= 391" in llm_server.chat_requests[1]["body"]["messages"][-1]["content"]
    assert "= 395" in llm_server.chat_requests[2]["body"]["messages"][-1]["content"]
