"""The README's commands are the ones CI runs, and its workflow example runs as written."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_blocks():
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = _bash_blocks()
    example_cmd, test_cmd = blocks[0].strip(), blocks[1].strip()
    assert example_cmd == "pip install -e . && python examples/01_hello_world.py"
    assert test_cmd in ci.splitlines()
    assert example_cmd in ci.splitlines()


def test_readme_workflow_example_runs(tmp_path, monkeypatch, capsys):
    code = re.findall(r"```python\n(.*?)```", README, flags=re.S)[0]
    code = code.replace("lmdb:///tmp/greeter", f"lmdb://{tmp_path}/greeter")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "completed {'greeting': 'Hello, Ada!'}" in out
