"""The live views of the command line (``runs watch``, ``runs list --watch``, ``runs tree``), driven as a person
and a script use them: in a pseudo-terminal (pexpect) and through a pipe, while other processes advance the run in
the same LMDB store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from abstractruntime import Runtime

pexpect = pytest.importorskip("pexpect")

#: the workflow, as the test and the process that advances the run both define it
FLOW_SOURCE = textwrap.dedent("""
    from abstractruntime import Effect, EffectType, StepPlan, WorkflowSpec

    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "Name?"}, "answer"),
                        next_node="greet")

    def greet(run, ctx):
        if run.vars["answer"]["text"] == "boom":
            raise RuntimeError("cannot greet boom")
        return StepPlan(node_id="greet", next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"hello": run.vars["answer"]["text"]})

    FLOW = WorkflowSpec(workflow_id="live_flow", entry_node="ask", nodes={"ask": ask, "greet": greet, "done": done})
""")
namespace: dict = {}
exec(compile(FLOW_SOURCE, "<live_flow>", "exec"), namespace)  # noqa: S102 - our own source, shared with the child
FLOW = namespace["FLOW"]

ADVANCE = FLOW_SOURCE + textwrap.dedent("""
    import sys
    from abstractruntime import Runtime

    url, run_id = sys.argv[1], sys.argv[2]
    with Runtime.from_config({"store": url}) as rt:
        rt.tick(workflow=FLOW, run_id=run_id)
""")
COLOR = re.compile(r"\x1b\[[0-9;]*m")  # SGR: colours and text styles
TERMINAL = ("completed", "failed", "cancelled")


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_") and k != "NO_COLOR"}
    env.update({"TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"}, **extra)
    return env


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "abstractruntime_cli", *args], capture_output=True, text=True,
                          timeout=60, env=_env())


def advance(url: str, run_id: str) -> None:
    """Another process ticks the run (what a worker does)."""
    done = subprocess.run([sys.executable, "-c", ADVANCE, url, run_id], capture_output=True, text=True, timeout=60,
                          env=_env())
    assert done.returncode == 0, done.stderr


@pytest.fixture
def waiting_run(tmp_path):
    url = f"lmdb://{tmp_path}/db"
    with Runtime.from_config({"store": url}) as rt:
        run_id = rt.start(workflow=FLOW)
        rt.tick(workflow=FLOW, run_id=run_id)
        assert rt.get_state(run_id).status.value == "waiting"
    return url, run_id


def _spawn(*args: str, **env: str):
    return pexpect.spawn(sys.executable, ["-m", "abstractruntime_cli", *args], env=_env(**env), encoding="utf-8",
                         dimensions=(50, 160), timeout=30)


def test_runs_watch_in_a_terminal_follows_the_run_another_process_advances(waiting_run):
    url, run_id = waiting_run
    child = _spawn("--store", url, "runs", "watch", run_id, "--interval", "0.1")
    child.expect("waiting")
    child.expect("Name\\?")  # the wait: what the run asks
    child.expect("ask_user")  # its ledger rows
    assert cli("--store", url, "respond", run_id, "--json", '{"text": "Ada"}').returncode == 0
    child.expect("running")  # the answer is delivered: RUNNING, new ledger rows
    advance(url, run_id)
    child.expect("completed")
    child.expect(pexpect.EOF)  # it ends when the run does
    child.close()
    assert child.exitstatus == 0
    assert "done" in child.before  # the last node and its ledger rows were drawn


def test_runs_watch_in_a_terminal_is_in_colour_and_without_it_under_no_color(waiting_run):
    url, run_id = waiting_run
    outputs = {}
    for label, extra in (("colour", {}), ("no_color", {"NO_COLOR": "1"})):
        child = _spawn("--store", url, "runs", "watch", run_id, "--interval", "0.1", **extra)
        child.expect("Ctrl-C to stop")
        outputs[label] = child.before
        child.sendintr()  # Ctrl-C ends the view, exit 0
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, label
    assert COLOR.search(outputs["colour"]) and "waiting" in outputs["colour"]
    assert not COLOR.search(outputs["no_color"]) and "waiting" in outputs["no_color"]


def test_runs_watch_through_a_pipe_prints_plain_lines_as_the_ledger_grows(waiting_run):
    url, run_id = waiting_run
    watcher = subprocess.Popen([sys.executable, "-m", "abstractruntime_cli", "--store", url, "runs", "watch", run_id,
                                "--interval", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_env())
    first = [watcher.stdout.readline() for _ in range(4)]
    assert first[0].startswith(f"run {run_id} (workflow live_flow)")
    assert first[1].startswith("status: waiting at node ask -- waiting for user 'Name?'")
    assert first[2].split() == ["#1", "ask", "started", "ask_user"]
    assert first[3].split() == ["#2", "ask", "waiting", "ask_user"]
    assert cli("--store", url, "respond", run_id, "--json", '{"text": "Ada"}').returncode == 0
    advance(url, run_id)
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    lines = out.splitlines()
    assert not COLOR.search(out) and "\x1b" not in out  # plain text: no colour, no cursor movement
    assert lines[-1] == "run completed"
    assert "status: completed at node done" in lines
    numbers = [int(line.split()[0][1:]) for line in first[2:] + lines if line.startswith("#")]
    assert numbers == list(range(1, len(numbers) + 1))  # every row once, in order
    with Runtime.from_config({"store": url, "store_options": {"read_only": True}}) as rt:
        assert len(rt.get_ledger(run_id)) == len(numbers)


def test_runs_watch_json_lines_and_exit_status_of_a_failed_run(waiting_run):
    url, run_id = waiting_run
    watcher = subprocess.Popen([sys.executable, "-m", "abstractruntime_cli", "--store", url, "runs", "watch", run_id,
                                "--interval", "0.1", "--json", "--exit-status"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_env())
    events = [json.loads(watcher.stdout.readline())]
    assert events[0]["event"] == "state" and events[0]["status"] == "waiting"
    assert cli("--store", url, "respond", run_id, "--json", '{"text": "boom"}').returncode == 0
    while not (events[-1]["event"] == "state" and events[-1]["status"] == "running"):  # the watcher saw the answer
        events.append(json.loads(watcher.stdout.readline()))
    advance(url, run_id)
    out, err = watcher.communicate(timeout=30)
    events += [json.loads(line) for line in out.splitlines()]
    assert watcher.returncode == 1, err  # --exit-status: the run failed
    assert events[-1]["event"] == "end" and events[-1]["status"] == "failed" and "boom" in events[-1]["error"]
    assert [e["record"] for e in events if e["event"] == "ledger"][:2] == [1, 2]
    assert {e["status"] for e in events if e["event"] == "state"} >= {"running", "failed"}
    unknown = cli("--store", url, "runs", "watch", "no-such-run")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: Unknown run_id: no-such-run")


def test_runs_list_watch_refreshes_and_runs_tree_shows_parents_and_children(tmp_path):
    url = f"lmdb://{tmp_path}/db"
    with Runtime.from_config({"store": url}) as rt:
        parent = rt.start(workflow=FLOW)
        rt.tick(workflow=FLOW, run_id=parent)
        child = rt.start(workflow=FLOW, parent_run_id=parent)
        grandchild = rt.start(workflow=FLOW, parent_run_id=child)
    out = cli("--store", url, "runs", "list", "--watch", "--interval", "0.1", "--count", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(" run(s)") == 1  # printed again only when the list changes
    lines = cli("--store", url, "--json", "runs", "list", "--watch", "--count", "1", "--interval", "0.1").stdout
    assert {r["run_id"] for r in json.loads(lines)["runs"]} == {parent, child, grandchild}
    tree = json.loads(cli("--store", url, "--json", "runs", "tree", grandchild).stdout)
    assert tree["root"]["run_id"] == parent and tree["root"]["status"] == "waiting"
    assert tree["root"]["children"][0]["run_id"] == child
    assert tree["root"]["children"][0]["children"][0]["run_id"] == grandchild
    text = cli("--store", url, "runs", "tree", child).stdout.splitlines()
    assert text[0].startswith(f"{parent}  live_flow  waiting")
    assert text[1].startswith(f"  {child}  live_flow  running") and text[1].endswith("<-")
    assert text[2].startswith(f"    {grandchild}")
    pty = _spawn("--store", url, "runs", "tree", child)
    pty.expect(pexpect.EOF)
    assert grandchild in pty.before and COLOR.search(pty.before)  # a terminal gets the coloured tree


def test_export_import_and_verify_draw_progress_bars_on_a_terminal_only(waiting_run, tmp_path):
    url, run_id = waiting_run
    target = tmp_path / "run.zip"
    for argv, stage in (([url, "export", run_id, "-o", str(target)], "writing artifacts"),
                        ([url, "ledger", "verify", run_id], "verifying the ledger"),
                        ([f"lmdb://{tmp_path}/other", "import", str(target)], "importing runs")):
        pty = _spawn("--store", *argv)
        pty.expect(stage)  # the bar's last frame (then erased: the bars are transient)
        pty.expect(pexpect.EOF)
        pty.close()
        assert pty.exitstatus == 0, argv
    assert cli("--store", url, "export", run_id, "-o", str(target)).returncode == 0
    for argv in (["ledger", "verify", run_id], ["--json", "ledger", "verify", run_id]):
        piped = cli("--store", url, *argv)
        assert piped.returncode == 0 and piped.stderr == ""  # no bar drawn into a pipe
    imported = cli("--store", f"lmdb://{tmp_path}/third", "--json", "import", str(target))
    assert json.loads(imported.stdout)["run_ids"] == [run_id] and imported.stderr == ""
