"""Integration-surface §4.4: when the run's workspace refuses the path of ``list_files``, ``skim_folders``,
``skim_files`` or ``search_files``, the TOOL_CALLS handler answers from the session's attachments (files an earlier
``read_file`` of the session registered) -- stored artifacts, never the file system.

Real parts only: the plugin's runtime, a file artifact store in a tmp dir, AbstractCore's own file tools, real files.
A first run of session ``chat`` reads files (registering them as attachments); a second run of the same session,
confined to a workspace, names them again with refused paths."""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

import pytest

import abstractruntime_abstractcore as plugin
from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.integrations.abstractcore.session_attachments import list_session_attachments
from abstractruntime_abstractcore import MappingToolExecutor, attach
from abstractruntime_artifacts.store import FileArtifactStore
from abstractruntime_inmemory.store import MemoryBackend

TOOLS = ("read_file", "list_files", "skim_folders", "skim_files", "search_files")
BLOCKED = "attachments only; filesystem access blocked"
A_MD = "# Alpha\nthe beta line\ngamma\n"
B_TXT = "one\nBETA two\nthree beta\n"
HIDDEN = "secret beta\n"
GUIDE = "Guide\nstep one\nstep two\nstep three\n"


class Session:
    """One runtime (file artifact store), the real AbstractCore file tools wrapped to record every call."""

    def __init__(self, tmp_path: Path):
        from abstractcore.tools import common_tools

        self.ran = []

        def recorded(fn):
            inner = getattr(fn, "__wrapped__", fn)

            @functools.wraps(inner)
            def tool(*args, **kwargs):
                self.ran.append((inner.__name__, kwargs))
                return inner(*args, **kwargs)
            return tool

        backend = MemoryBackend()
        self.store = FileArtifactStore(tmp_path / "state")
        self.rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store, artifact_store=self.store,
                          plugins=[plugin])
        attach(self.rt, tools=MappingToolExecutor({n: recorded(getattr(common_tools, n)) for n in TOOLS}))
        self.ws = tmp_path / "ws"
        self.notes = tmp_path / "outside" / "notes"
        (self.ws / "docs").mkdir(parents=True)
        (self.notes / "sub").mkdir(parents=True)
        (self.notes / "a.md").write_text(A_MD)
        (self.notes / "sub" / "b.txt").write_text(B_TXT)
        (self.notes / ".hidden.md").write_text(HIDDEN)
        (self.ws / "docs" / "guide.md").write_text(GUIDE)

    def run(self, calls, *, session_id="chat", tamper=False, **variables):
        def widen(run, ctx):  # a node that widens its workspace: every path tool is refused from then on
            if tamper:
                run.vars["workspace_root"] = "/"
            return StepPlan(node_id="widen", next_node="call")

        flow = WorkflowSpec(workflow_id="tools", entry_node="widen", nodes={
            "widen": widen,
            "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(EffectType.TOOL_CALLS,
                                                                           {"tool_calls": calls}, "res"),
                                              next_node="done"),
            "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"res": run.vars.get("res")}),
        })
        state = self.rt.tick(workflow=flow, run_id=self.rt.start(workflow=flow, vars=variables,
                                                                 session_id=session_id))
        assert state.status is RunStatus.COMPLETED, state.error
        return state.output["res"]["results"]

    def register(self):
        """Turn 1: read the outside notes (no workspace) and the workspace guide (inside the workspace)."""
        reads = [{"name": "read_file", "arguments": {"file_path": str(p)}}
                 for p in (self.notes / "a.md", self.notes / "sub" / "b.txt", self.notes / ".hidden.md")]
        assert all(r["success"] for r in self.run(reads))
        assert self.run([{"name": "read_file", "arguments": {"file_path": "docs/guide.md"}}],
                        workspace_root=str(self.ws))[0]["success"]
        self.ran.clear()
        return {e["handle"]: e for e in list_session_attachments(artifact_store=self.store, session_id="chat")}

    def confined(self, calls, **more):
        """Turn 2: the same session, confined to the workspace (``docs`` ignored)."""
        return self.run(calls, workspace_root=str(self.ws), workspace_ignored_paths=["docs"], **more)


@pytest.fixture
def session(tmp_path):
    return Session(tmp_path)


def _ok(result):
    assert result["success"] is True and result["error"] is None, result
    return result["output"]


def test_list_files_refused_path_lists_the_session_attachments(session):
    session.register()
    notes = session.notes.as_posix()
    results = session.confined([
        {"name": "list_files", "arguments": {"directory_path": str(session.notes)}},
        {"name": "list_files", "arguments": {"directory_path": "@" + notes, "recursive": "true",
                                             "includeHidden": True, "headLimit": 2}},
    ])
    # a relative "file://..." is a child of the workspace root; under a tampered policy every path is refused
    results[1:1] = session.confined([{"name": "list_files", "arguments": {
        "directory_path": "file://" + notes.replace("notes", "no%74es") + "/", "pattern": "*.MD|*.txt",
        "recursive": True}}], tamper=True)
    assert _ok(results[0]) == (f"Entries in '{notes}' matching '*' (hidden entries excluded; {BLOCKED}):\n"
                               f"  sub/\n  a.md ({len(A_MD)} bytes)")
    assert _ok(results[1]) == (f"Entries in '{notes}' matching '*.MD|*.txt' (hidden entries excluded; {BLOCKED}):\n"
                               f"  a.md ({len(A_MD)} bytes)\n  sub/b.txt ({len(B_TXT)} bytes)")
    assert _ok(results[2]) == (f"Entries in '{notes}' matching '*' (hidden entries included; {BLOCKED}):\n"
                               f"  .hidden.md ({len(HIDDEN)} bytes)\n  a.md ({len(A_MD)} bytes)\n  ... (1 more)")
    assert session.ran == []


def test_skim_folders_refused_path_maps_the_session_attachments(session):
    session.register()
    notes = session.notes.as_posix()
    (result,) = session.confined([{"name": "skim_folders", "arguments": {"paths": f"{notes}|./docs|/etc"}}])
    assert _ok(result) == (
        f"Folder map for '{notes}' (2 attachments; {BLOCKED}):\n./ (1 file)\n  a.md ({len(A_MD)} bytes)\n"
        f"sub/ (1 file)\n  b.txt ({len(B_TXT)} bytes)\n\n"
        f"Folder map for 'docs' (1 attachment; {BLOCKED}):\n./ (1 file)\n  guide.md ({len(GUIDE)} bytes)\n\n"
        f"Folder map for '/etc' (no session attachments under this path; filesystem access blocked)")
    assert session.ran == []


def test_skim_files_refused_paths_open_the_session_attachments(session):
    entries = session.register()
    guide, a_md = entries["docs/guide.md"], entries[(session.notes / "a.md").as_posix()]
    (result,) = session.confined([{"name": "skim_files", "arguments": {
        "paths": ["@./docs/guide.md", str(session.notes / "a.md")], "head_lines": 2}}])
    guide_block = (f"Attachment: docs/guide.md (id={guide['artifact_id']}, sha={guide['sha256']}, lines 1-2)\n\n"
                   f"1: Guide\n2: step one")
    assert _ok(result) == (guide_block + "\n\n"
                           f"Attachment: a.md (id={a_md['artifact_id']}, sha={a_md['sha256']}, lines 1-2)\n\n"
                           f"1: # Alpha\n2: the beta line")
    # a backslashed path is a file name of the workspace; under a tampered policy every path is refused
    (result,) = session.confined([{"name": "skim_files", "arguments": {"paths": "docs\\guide.md", "headLines": 0}}],
                                 tamper=True)
    assert _ok(result) == guide_block.replace("lines 1-2", "lines 1-1").replace("\n2: step one", "")
    assert guide["sha256"] == hashlib.sha256(GUIDE.encode()).hexdigest()
    assert session.ran == []


def test_search_files_refused_path_searches_the_session_attachments(session):
    session.register()
    notes = session.notes.as_posix()
    b_txt = f"{notes}/sub/b.txt"
    header = f"Search results in session attachments for pattern '{{}}' ({BLOCKED}):"
    results = session.confined([
        {"name": "search_files", "arguments": {"pattern": "BETA", "path": b_txt}},  # the exact handle
        {"name": "search_files", "arguments": {"pattern": "beta", "path": notes + "/sub/", "head_limit": 1}},
        {"name": "search_files", "arguments": {"pattern": "beta|step", "path": "/etc", "max_hits": 2}},  # all
        {"name": "search_files", "arguments": {"pattern": "^step t", "path": "docs"}},
    ])
    assert _ok(results[0]) == header.format("BETA") + f"\n\nFile: {b_txt}\n  2: BETA two\n  3: three beta"
    assert _ok(results[1]) == header.format("beta") + f"\n\nFile: {b_txt}\n  2: BETA two"
    hidden, a_md = f"{notes}/.hidden.md", f"{notes}/a.md"
    assert _ok(results[2]) == (header.format("beta|step") + f"\n\nFile: {hidden}\n  1: secret beta\n\n"
                               f"File: {a_md}\n  2: the beta line\n\n"
                               f"Note: stopped after max_hits=2; more attachments may match.")
    assert _ok(results[3]) == header.format("^step t") + "\n\nFile: docs/guide.md\n  3: step two\n  4: step three"
    assert session.ran == []


def test_invalid_regex_is_a_failed_result(session):
    session.register()
    (result,) = session.confined([{"name": "search_files", "arguments": {"pattern": "beta(", "path": "/etc"}}])
    assert result["success"] is False and result["output"] is None
    assert re.fullmatch(r"Invalid regex pattern 'beta\(': missing \), unterminated subpattern at position 4",
                        result["error"]), result["error"]


def test_without_a_matching_attachment_the_refusal_stands(session, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.md").write_text("beta\n")
    calls = [{"name": "list_files", "arguments": {"directory_path": str(tmp_path / "elsewhere")}},
             {"name": "skim_folders", "arguments": {"paths": [str(tmp_path / "elsewhere")]}},
             {"name": "skim_files", "arguments": {"paths": [str(tmp_path / "elsewhere" / "x.md")]}},
             {"name": "search_files", "arguments": {"pattern": "beta", "path": str(tmp_path / "elsewhere")}}]
    for result in session.confined(calls):  # the session has no attachment at all
        assert result["success"] is False and result["error"].startswith(f"Tool '{result['name']}' refused:")
    session.register()
    results = session.confined(calls[:3] + [{"name": "list_files", "arguments": {
        "directory_path": str(session.notes), "pattern": "*.pdf"}}])
    for result in results:  # attachments, but none under these paths / for this pattern
        assert result["success"] is False and result["error"].startswith(f"Tool '{result['name']}' refused:")
    for result in session.confined(calls, session_id=None):  # no session: nothing to fall back on
        assert result["success"] is False and "refused" in result["error"]
    assert session.ran == []


def test_nothing_outside_the_attachments_is_read(session):
    session.register()
    notes = session.notes.as_posix()
    (session.notes / "a.md").write_text(A_MD + "DISKONLY\n")  # changed on disk after the session saw it
    (session.notes / "new.md").write_text("DISKONLY\n")  # never attached
    (session.notes / "sub" / "b.txt").unlink()  # gone from disk, still an attachment
    results = session.confined([
        {"name": "list_files", "arguments": {"directory_path": notes, "recursive": True}},
        {"name": "search_files", "arguments": {"pattern": "diskonly", "path": notes}},
        {"name": "skim_files", "arguments": {"paths": [f"{notes}/a.md", f"{notes}/new.md"]}},
        {"name": "skim_folders", "arguments": {"paths": [notes]}},
    ])
    listing, search, skim, folders = (_ok(r) for r in results)
    assert "new.md" not in listing and "sub/b.txt" in listing and f"a.md ({len(A_MD)} bytes)" in listing
    assert search.endswith("\n\nNo matches found in session attachments.")
    assert "DISKONLY" not in skim and f"Error: no attachment matches handle '{notes}/new.md'" in skim
    assert "new.md" not in folders and "b.txt" in folders
    assert session.ran == []  # no tool ran: the answers came from the artifact store only


def test_the_stand_ins_have_no_file_system_access_at_all():
    import ast

    import abstractruntime_abstractcore.attachment_tools as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom) and node.module}
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not imported & {"os", "pathlib", "glob", "shutil", "io", "subprocess"}
    assert not names & {"open", "Path", "os", "glob"}
