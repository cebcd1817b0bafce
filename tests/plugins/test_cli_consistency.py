"""One command line: every command has ``--json``, errors are one ``error:`` line with uniform exit codes (the
traceback only with ``-v``), shell completion works, ``doctor`` says what to fix, and the start-up imports nothing
heavy (checked by what is imported, not by timing: benchmarks/startup.py measures the time)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from abstractruntime import Runtime

HEAVY = ("rich", "structlog", "argcomplete", "httpx", "cryptography", "abstractcore", "psycopg", "starlette",
         "uvicorn", "jinja2", "RestrictedPython", "abstractruntime_visualflow.compiler",
         "abstractruntime_abstractcore.llm_client", "abstractruntime_bundles.reader",
         "abstractruntime_active_memory.compaction", "abstractruntime_scheduler.scheduler",
         "abstractruntime_history.portable", "abstractruntime_cli.live", "abstractruntime_cli.doctor")


def _env(extra_path: str = "", **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ABSTRACTRUNTIME_", "_ARC"))}
    env.pop("NO_COLOR", None)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def cli(*args: str, extra_path: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "abstractruntime_cli", *args], capture_output=True, text=True,
                          timeout=60, env=_env(extra_path, **env))


def _install_plugin(site: Path, dist: str, module: str, source: str) -> None:
    """A real third-party distribution (dist-info with an entry point) on a path the child process is given."""
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[abstractruntime]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


BUGGY = """
from abstractruntime import hookimpl
from abstractruntime.descriptors import CliCommandDescriptor

def _run(args, runtime):
    return {}["no such key"] if args.kind == "key" else None + 1

@hookimpl
def abstractruntime_register_cli_commands():
    return [CliCommandDescriptor("buggy", "fails", lambda p: p.add_argument("kind"), _run, store="none")]
"""


def test_start_up_imports_nothing_heavy():
    code = textwrap.dedent(f"""
        import sys
        heavy = {HEAVY!r}
        import abstractruntime
        assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]
        rt = abstractruntime.Runtime.from_config({{"store": "memory://"}})
        assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]
        import contextlib, io
        from abstractruntime_cli.main import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["--store", "memory://", "runs", "list"]) == 0
        assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]
        print("clean")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env())
    assert out.returncode == 0 and out.stdout.strip() == "clean", out.stderr


def test_every_command_takes_json_before_or_after_its_name():
    from abstractruntime.plugins import Hooks, build_plugin_manager
    from abstractruntime.settings import load_settings
    from abstractruntime_cli.main import _build_parser

    settings = load_settings({})
    pm, infos = build_plugin_manager(settings.plugins)
    commands = [d for _p, d in Hooks(pm, infos=infos).cli_commands()]
    parser = _build_parser(commands)
    leaves = []

    def walk(p, words):
        for action in p._actions:
            if getattr(action, "choices", None) and hasattr(action, "_name_parser_map"):
                for word, sub in action._name_parser_map.items():
                    walk(sub, words + [word])
        if "_command" in {k for k, v in p._defaults.items() if v is not None}:
            leaves.append((" ".join(words), p))

    walk(parser, [])
    assert {name for name, _ in leaves} == {d.name for d in commands}
    for name, leaf in leaves:
        assert "--json" in leaf._option_string_actions, name
    without = [name for name, leaf in leaves if leaf._option_string_actions["--json"].dest != "json"]
    assert without == ["respond"]  # its --json is the answer (documented)


def test_errors_are_one_line_exit_2_and_the_traceback_needs_v(tmp_path):
    out = cli("--store", "memory://", "runs", "show", "nope")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stderr.startswith("error: Unknown run_id")
    assert "runs list" in out.stderr  # what to do
    out = cli("--store", f"lmdb://{tmp_path}/missing", "runs", "list")
    assert out.returncode == 2 and out.stderr.startswith("error: No lmdb store at") and "Traceback" not in out.stderr
    out = cli("runs", "list", "--status", "sleeping")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "(usage: abstractruntime runs list --help)" in \
        out.stderr
    out = cli("-v", "--store", "memory://", "runs", "show", "nope")
    assert out.returncode == 2 and "Traceback" in out.stderr and "UnknownRunError" in out.stderr
    _install_plugin(tmp_path, "arfake-buggy", "arfake_buggy", BUGGY)
    out = cli("buggy", "type", extra_path=str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.splitlines() == [
        "error: unexpected TypeError: unsupported operand type(s) for +: 'NoneType' and 'int'",
        "error: this is a bug: run the command again with -v for the traceback and report it"]
    out = cli("-v", "buggy", "type", extra_path=str(tmp_path))
    assert out.returncode == 2 and "Traceback" in out.stderr and "arfake_buggy.py" in out.stderr
    out = cli("buggy", "key", extra_path=str(tmp_path))  # a KeyError is an error the command reports
    assert out.returncode == 2 and out.stderr == "error: no such key\n"


def test_a_group_without_its_command_shows_its_commands_and_exits_2():
    out = cli("ledger")
    assert out.returncode == 2 and "show" in out.stdout and "verify" in out.stdout


def test_shell_completion_scripts_and_completions(tmp_path):
    for shell in ("bash", "zsh", "fish"):
        out = cli("completion", shell)
        assert out.returncode == 0 and "abstractruntime" in out.stdout and "_ARGCOMPLETE" in out.stdout, shell
    if shutil.which("bash"):
        script = tmp_path / "complete.bash"
        script.write_text(cli("completion", "bash").stdout)
        checked = subprocess.run(["bash", "-c", f"source {script} && complete -p abstractruntime"],
                                 capture_output=True, text=True)
        assert checked.returncode == 0 and "abstractruntime" in checked.stdout, checked.stderr
    assert json.loads(cli("--json", "completion", "fish").stdout)["shell"] == "fish"

    def complete(line: str) -> list:
        target = tmp_path / "completions.txt"
        done = subprocess.run(
            [sys.executable, "-m", "abstractruntime_cli"], capture_output=True, text=True, timeout=60,
            env=_env(_ARGCOMPLETE="1", _ARGCOMPLETE_SHELL="bash", COMP_LINE=line, COMP_POINT=str(len(line)),
                     _ARGCOMPLETE_STDOUT_FILENAME=str(target), _ARGCOMPLETE_IFS="\n"))
        assert done.returncode == 0, done.stderr
        return target.read_text().split()

    assert {"runs", "ledger", "doctor", "completion", "export"} <= set(complete("abstractruntime "))
    assert {"list", "show", "watch", "tree"} <= set(complete("abstractruntime runs "))
    assert "waiting" in complete("abstractruntime runs list --status ")
    assert "--exit-status" in complete("abstractruntime runs watch x --")


def test_doctor_on_a_healthy_store_a_newer_schema_and_a_failed_plugin(tmp_path):
    url = f"lmdb://{tmp_path}/db"
    Runtime.from_config({"store": url}).close()
    out = cli("--store", url, "doctor")
    assert out.returncode == 0 and out.stdout.rstrip().endswith("no problems found"), out.stdout + out.stderr
    report = json.loads(cli("--store", url, "--json", "doctor").stdout)
    checks = {(c["section"], c["check"]): c for c in report["checks"]}
    assert report["ok"] is True and checks[("store", "opens")]["status"] == "ok"
    assert checks[("store", "schema version")]["status"] == "ok" and checks[("store", "map")]["status"] == "ok"
    assert checks[("optional dependencies", "cli")]["status"] == "ok"

    missing = cli("--store", f"lmdb://{tmp_path}/not-yet", "--json", "doctor")
    checks = {(c["section"], c["check"]): c for c in json.loads(missing.stdout)["checks"]}
    assert missing.returncode == 0 and checks[("store", "opens")]["status"] == "warning"
    assert not (tmp_path / "not-yet").exists()  # the doctor creates nothing

    import lmdb

    env = lmdb.open(f"{tmp_path}/db", max_dbs=0)
    with env.begin(write=True) as txn:
        txn.put(b"m:schema_version", b"99")
    env.close()
    _install_plugin(tmp_path / "site", "arfake-broken", "arfake_broken", "raise ImportError('needs frobnicate')\n")
    out = cli("--store", url, "doctor", extra_path=str(tmp_path / "site"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 problem(s) found" in out.stdout or "2 problem(s) found" in out.stdout
    report = json.loads(cli("--store", url, "--json", "doctor", extra_path=str(tmp_path / "site")).stdout)
    errors = {c["check"]: c for c in report["checks"] if c["status"] == "error"}
    assert "arfake_broken" in errors and "frobnicate" in errors["arfake_broken"]["detail"]
    assert "block" in errors["arfake_broken"]["fix"]
    assert ("opens" in errors and "99" in errors["opens"]["detail"]) or "schema version" in errors


def test_doctor_says_which_optional_dependency_a_configured_feature_misses(tmp_path):
    """A postgresql:// store without psycopg: an error with the pip command (psycopg is installed here, so the
    child process is made not to find it, as on a machine without the extra)."""
    code = textwrap.dedent("""
        import importlib.util, sys
        real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name in ("psycopg", "psycopg_pool") else real(name, *a)
        from abstractruntime_cli.main import main
        sys.exit(main(sys.argv[1:]))
    """)
    out = subprocess.run([sys.executable, "-c", code, "--store", "postgresql://nobody@127.0.0.1:1/none", "--json",
                          "doctor"], capture_output=True, text=True, timeout=60, env=_env())
    report = json.loads(out.stdout)
    check = next(c for c in report["checks"] if c["check"] == "postgres")
    assert out.returncode == 1 and check["status"] == "error" and "abstractruntime[postgres]" in check["fix"]
