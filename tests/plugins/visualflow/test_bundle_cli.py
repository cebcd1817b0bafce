"""``abstractruntime flow pack|inspect|validate|run|resume`` as a subprocess on a real LMDB store."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from vf_support import REPO, entry_point_env

SRC = REPO / "examples" / "flows" / "src"


@pytest.fixture
def cli(tmp_path):
    env = entry_point_env(tmp_path)
    store = f"lmdb://{tmp_path}/store"

    def call(*args: str, json_out: bool = False) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "abstractruntime_cli", "--store", store] + (["--json"] if json_out else [])
        return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)

    call.store = store
    return call


def test_pack_inspect_validate_run_resume(cli, tmp_path):
    out = cli("flow", "pack", str(SRC), "-o", str(tmp_path / "g.flow"), "--bundle-version", "1.0.0")
    assert out.returncode == 0, out.stderr
    assert "groceries@1.0.0" in out.stdout
    info = json.loads(cli("flow", "inspect", str(tmp_path / "g.flow"), json_out=True).stdout)
    assert info["bundle_id"] == "groceries" and set(info["flows"]) == {"groceries", "decorate"}
    ok = cli("flow", "validate", str(tmp_path / "g.flow"), "--strict", json_out=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] is True, ok.stdout + ok.stderr

    ran = cli("flow", "run", str(tmp_path / "g.flow"), "--input", '{"items": ["tea", "jam"]}')
    assert ran.returncode == 0, ran.stderr
    assert "is waiting (user)" in ran.stdout and "prompt: What is your name?" in ran.stdout
    resume_line = next(line for line in ran.stdout.splitlines() if line.startswith("resume with: "))
    command = shlex.split(resume_line[len("resume with: "):])
    assert command[:3] == ["abstractruntime", "--store", cli.store] and command[3:5] == ["flow", "resume"]
    run_id = command[5]
    done = cli("flow", "resume", run_id, "--response", "Ada", json_out=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["run_id"] == run_id
    assert result["output"] == {"answer": "Hello Ada, your list: TEA, JAM", "lines": ["TEA", "JAM"], "success": True}
    # the run is an ordinary run of the store: the core commands see it
    shown = json.loads(cli("runs", "show", run_id, json_out=True).stdout)
    assert shown["status"] == "completed"


def test_validate_reports_compile_errors_and_bad_inputs(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.json").write_text(json.dumps({"id": "bad", "nodes": [
        {"id": "s", "type": "on_flow_start", "data": {"outputs": [{"id": "exec-out", "type": "execution"}]}}],
        "edges": [{"source": "s", "sourceHandle": "exec-out", "target": "ghost", "targetHandle": "exec-in"}]}))
    assert cli("flow", "pack", str(src), "-o", str(tmp_path / "bad.flow")).returncode == 0
    res = cli("flow", "validate", str(tmp_path / "bad.flow"))
    assert res.returncode == 1 and "ghost" in res.stdout
    missing = cli("flow", "run", str(tmp_path / "nope.flow"))
    assert missing.returncode == 2 and "not found" in missing.stderr
    bad_input = cli("flow", "run", str(tmp_path / "bad.flow"), "--input", "[1]")
    assert bad_input.returncode == 2 and "--input must be a JSON object" in bad_input.stderr
