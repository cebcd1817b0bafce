"""``abstractruntime_pluginkit``: the public helpers for writing a plugin (a library, not a plugin: it registers no
hook). The builtin plugins are built on it, and so can a third-party one:

* :mod:`.options` -- :func:`plugin_options` / :func:`structure_options`, one way to declare, read and check options;
* :mod:`.paths` -- :func:`get_path` / :func:`parse_path` / :func:`set_path`, the one implementation of paths into
  run variables (dotted, bracketed, JSON pointer);
* :mod:`.registry` -- :class:`WorkflowRegistry`, workflow specs by id (the reference's registry);
* :mod:`.drivers` -- :func:`attach_driver` / :func:`is_driven`: which runtimes a scheduler or worker drives;
* :mod:`.run_tree` -- a run's ancestors, root and the runs an effect may address (``target_run_id``);
* :mod:`.event_keys` -- :func:`build_event_wait_key`, the reference's event wait-key format;
* :mod:`.hostloop` -- :func:`on_host_loop`: is an async handler awaited on an asyncio host's loop (an
  ``AsyncRuntime``) or on a private one;
* :mod:`.jsonload` -- :func:`loads_bounded` / :func:`check_value_depth`, JSON from outside with a bounded nesting
  depth (:class:`JsonTooDeepError` before any recursive parser sees it);
* :mod:`.follow` -- :class:`LedgerFollower`, a run's ledger rows appended since the last look (live views, streams).

Store authors have ``abstractruntime_storekit`` as well.
"""

from .lazy import lazy_exports

# Each name is imported from its module on first use: every plugin package imports this one, and a plugin that needs
# plugin_options should not pay for the others (hostloop's asyncio, the registry, ...) at start-up (issue 23).
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["attach_driver", "is_driven"], ".drivers"),
    **dict.fromkeys(["SCOPES", "build_event_wait_key"], ".event_keys"),
    **dict.fromkeys(["LedgerFollower"], ".follow"),
    **dict.fromkeys(["host_loop", "on_host_loop", "set_host_loop"], ".hostloop"),
    **dict.fromkeys(["DEFAULT_MAX_DEPTH", "JsonTooDeepError", "check_value_depth", "loads_bounded"], ".jsonload"),
    **dict.fromkeys(["plugin_options", "structure_options"], ".options"),
    **dict.fromkeys(["WorkflowRegistry", "WorkflowVersionNotFoundError", "spec_for_run"], ".registry"),
    **dict.fromkeys(["ancestors", "find_in_run_tree", "root_of"], ".run_tree"),
})

__all__ = [
    "plugin_options", "structure_options", "WorkflowRegistry", "WorkflowVersionNotFoundError", "spec_for_run", "ancestors", "root_of", "find_in_run_tree",
    "build_event_wait_key", "SCOPES", "attach_driver", "is_driven", "loads_bounded", "check_value_depth",
    "JsonTooDeepError", "DEFAULT_MAX_DEPTH", "on_host_loop", "host_loop", "set_host_loop", "LedgerFollower",
]
