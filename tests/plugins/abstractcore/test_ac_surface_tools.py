"""Integration-surface §1.4 (TOOL_CALLS part), §1.5, §1.7, §1.10, §1.12: every public name at its 0.4.2 path, with
the reference's signature (parameter names, kinds, defaults, in order). Extra parameters of ours are allowed only
when keyword-only with a default (a 0.4.2 call never passes them)."""

from __future__ import annotations

import importlib
import inspect

import pytest

P, K = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
REQ = inspect.Parameter.empty
BASE = "abstractruntime.integrations.abstractcore."

#: (module, dotted name, [(parameter, kind, default)] or None for "importable only")
EXPECTED = [
    ("effect_handlers", "make_tool_calls_handler", [("tools", K, None), ("artifact_store", K, None),
                                                    ("run_store", K, None)]),
    ("effect_handlers", "build_effect_handlers", [("llm", K, REQ), ("tools", K, None), ("artifact_store", K, None),
                                                  ("run_store", K, None)]),
    ("effect_handlers", "logger", None),
    ("tool_executor", "ToolExecutor.execute", [("self", P, REQ), ("tool_calls", K, REQ)]),
    ("tool_executor", "MappingToolExecutor", [("tool_map", P, REQ), ("timeout_s", K, None)]),
    ("tool_executor", "MappingToolExecutor.from_tools", [("tools", P, REQ), ("timeout_s", K, None)]),
    ("tool_executor", "MappingToolExecutor.set_timeout_s", [("self", P, REQ), ("timeout_s", P, REQ)]),
    ("tool_executor", "MappingToolExecutor.execute", [("self", P, REQ), ("tool_calls", K, REQ)]),
    ("tool_executor", "AbstractCoreToolExecutor", [("timeout_s", K, None)]),
    ("tool_executor", "AbstractCoreToolExecutor.set_timeout_s", [("self", P, REQ), ("timeout_s", P, REQ)]),
    ("tool_executor", "PassthroughToolExecutor", [("mode", K, "passthrough")]),
    ("tool_executor", "McpToolExecutor", [("server_id", K, REQ), ("mcp_url", K, REQ), ("timeout_s", K, 30.0),
                                          ("mcp_client", K, None)]),
    ("tool_executor", "DelegatingMcpToolExecutor", [("server_id", K, REQ), ("mcp_url", K, REQ),
                                                    ("transport", K, "streamable_http"),
                                                    ("wait_key_factory", K, None)]),
    ("tool_executor", "logger", None),
    ("default_tools", "comms_tools_enabled", []),
    ("default_tools", "email_tools_enabled", []),
    ("default_tools", "whatsapp_tools_enabled", []),
    ("default_tools", "telegram_tools_enabled", []),
    ("default_tools", "get_default_toolsets", []),
    ("default_tools", "get_default_tools", []),
    ("default_tools", "list_default_tool_specs", []),
    ("default_tools", "build_default_tool_map", []),
    ("default_tools", "filter_tool_specs", [("tool_names", P, REQ)]),
    ("default_tools", "ToolCallable", None),
    ("workspace_scoped_tools", "WorkspaceAccessMode", None),
    ("workspace_scoped_tools", "WorkspaceScope", [("root", P, REQ), ("access_mode", P, "workspace_only"),
                                                  ("ignored_paths", P, ()), ("allowed_paths", P, ())]),
    ("workspace_scoped_tools", "WorkspaceScope.from_input_data", [("input_data", P, REQ),
                                                                  ("key", K, "workspace_root"),
                                                                  ("base_dir", K, None)]),
    ("workspace_scoped_tools", "WorkspaceScopedToolExecutor", [("scope", K, REQ), ("delegate", K, REQ)]),
    ("workspace_scoped_tools", "WorkspaceScopedToolExecutor.execute", [("self", P, REQ), ("tool_calls", K, REQ)]),
    ("workspace_scoped_tools", "WorkspaceScopedToolExecutor.set_timeout_s", [("self", P, REQ),
                                                                            ("timeout_s", P, REQ)]),
    ("workspace_scoped_tools", "rewrite_tool_arguments", [("tool_name", K, REQ), ("args", K, REQ),
                                                          ("scope", K, REQ)]),
    ("workspace_scoped_tools", "resolve_workspace_base_dir", []),
    ("workspace_scoped_tools", "resolve_user_path", [("scope", K, REQ), ("user_path", K, REQ)]),
    ("session_attachments", "session_memory_owner_run_id", [("session_id", P, REQ)]),
    ("session_attachments", "list_session_attachments", [("artifact_store", K, REQ), ("session_id", K, REQ),
                                                         ("limit", K, 20)]),
    ("session_attachments", "render_session_attachments_system_message", [
        ("entries", P, REQ), ("max_entries", K, 20), ("max_chars", K, 4000),
        ("include_open_attachment_hint", K, True)]),
    ("session_attachments", "render_active_attachments_system_message", [("media", P, REQ), ("max_entries", K, 12),
                                                                         ("max_chars", K, 2000)]),
    ("session_attachments", "dedup_messages_view", [("messages", P, REQ), ("session_attachments", K, None)]),
    ("session_attachments", "execute_open_attachment", [(n, K, REQ) for n in (
        "artifact_store", "session_id", "artifact_id", "handle", "expected_sha256", "start_line", "end_line",
        "max_chars")]),
    ("session_attachments", "ParsedToolMessage", [("tool_name", P, REQ), ("body", P, REQ)]),
    ("session_attachments", "parse_tool_message", [("text", P, REQ)]),
]

ALL = {
    "workspace_scoped_tools": ["WorkspaceAccessMode", "WorkspaceScope", "WorkspaceScopedToolExecutor",
                               "rewrite_tool_arguments", "resolve_workspace_base_dir", "resolve_user_path"],
    "session_attachments": ["session_memory_owner_run_id", "list_session_attachments",
                            "render_session_attachments_system_message", "render_active_attachments_system_message",
                            "dedup_messages_view", "execute_open_attachment"],
}


def _resolve(module: str, dotted: str):
    obj = importlib.import_module(BASE + module)
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("module,name,params", EXPECTED, ids=[f"{m}.{n}" for m, n, _ in EXPECTED])
def test_name_and_signature(module, name, params):
    obj = _resolve(module, name)
    if params is None:
        return
    got = [(p.name, p.kind, p.default) for p in inspect.signature(obj).parameters.values()]
    assert got[:len(params)] == params, f"{module}.{name}{inspect.signature(obj)}"
    extra = got[len(params):]
    assert all(kind is K and default is not REQ for _n, kind, default in extra), f"extra parameters {extra}"


@pytest.mark.parametrize("module", sorted(ALL))
def test_dunder_all(module):
    assert sorted(importlib.import_module(BASE + module).__all__) == sorted(ALL[module])


def test_workspace_scope_is_frozen_and_tool_message_parsing():
    from abstractruntime.integrations.abstractcore.session_attachments import ParsedToolMessage, parse_tool_message
    from abstractruntime.integrations.abstractcore.workspace_scoped_tools import WorkspaceScope

    scope = WorkspaceScope(root=__import__("pathlib").Path("/tmp"))
    with pytest.raises(Exception):
        scope.access_mode = "all_except_ignored"
    assert parse_tool_message("[ read_file ]: a\nb") == ParsedToolMessage(tool_name="read_file", body="a\nb")
    assert parse_tool_message("[]: x") is None and parse_tool_message("no") is None


def test_delegating_mcp_executor_construction_checks():
    from abstractruntime.integrations.abstractcore.tool_executor import DelegatingMcpToolExecutor

    with pytest.raises(ValueError):
        DelegatingMcpToolExecutor(server_id="", mcp_url="http://x")
    ex = DelegatingMcpToolExecutor(server_id="s", mcp_url="http://x", transport=" ", wait_key_factory=lambda: "k")
    out = ex.execute(tool_calls=[{"name": "mcp::s::t"}])
    assert out["wait_key"] == "k" and out["details"]["transport"] == "streamable_http"
