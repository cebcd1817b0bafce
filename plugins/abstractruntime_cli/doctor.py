"""``abstractruntime doctor``: is this installation ready, and if not, what to fix (docs/cli.md, ``doctor``).

Four sections of checks, each ``ok``, ``info``, ``warning`` or ``error`` with what to do:

* configuration -- which file and environment variables are read, the store URL, the plugin settings;
* store -- it opens (read-only: the doctor creates and changes nothing), its schema version against the one this
  version reads, free space (LMDB: the memory map; every store: the disk), lock files (present, writable, stale
  LMDB readers), the SQLite journal;
* plugins -- loaded, failed (with the error), blocked, not allowed, not autoloaded, and unmet requirements;
* optional dependencies -- for each installed feature, the packages it needs: an error when the configuration uses
  the feature (a ``postgresql://`` store without psycopg, a signing key without ``cryptography``), else ``info``.

Exit code 1 if any check is an ``error``, else 0.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import attrs

from abstractruntime_cli.output import emit_json

#: feature (the plugin that has it) -> (the extra that installs it, [(import name, distribution)], what it does)
OPTIONAL_FEATURES: Dict[str, Tuple[str, List[Tuple[str, str]], str]] = {
    "postgres": ("postgres", [("psycopg", "psycopg"), ("psycopg_pool", "psycopg-pool")],
                 "PostgreSQL stores and `abstractruntime worker`"),
    "provenance": ("signing", [("cryptography", "cryptography")], "Ed25519 signatures of ledger records"),
    "visualflow": ("sandbox", [("RestrictedPython", "RestrictedPython")], "sandboxed VisualFlow code nodes"),
    "abstractcore": ("abstractcore", [("abstractcore", "abstractcore")], "LLM_CALL and TOOL_CALLS effects"),
    "kg_memory": ("kg", [("abstractmemory", "abstractmemory"), ("abstractsemantics", "abstractsemantics")],
                  "knowledge-graph memory effects"),
    "web": ("web", [("starlette", "starlette"), ("uvicorn", "uvicorn"), ("jinja2", "jinja2")],
            "the web console (`abstractruntime serve`)"),
    "cli": ("", [("rich", "rich"), ("argcomplete", "argcomplete")], "live views, colours and shell completion"),
}
STATUSES = ("ok", "info", "warning", "error")


class Report:
    def __init__(self) -> None:
        self.checks: List[Dict[str, Any]] = []

    def add(self, section: str, status: str, check: str, detail: str = "", fix: str = "") -> None:
        self.checks.append({"section": section, "check": check, "status": status, "detail": detail,
                            "fix": fix or None})

    @property
    def problems(self) -> int:
        return sum(1 for c in self.checks if c["status"] == "error")


def _mib(n: float) -> str:
    return f"{n / 1024 / 1024:,.1f} MiB" if n < 1024 ** 3 else f"{n / 1024 ** 3:,.2f} GiB"


def check_configuration(report: Report, settings: Any, config_arg: Optional[str]) -> None:
    source = config_arg or os.environ.get("ABSTRACTRUNTIME_CONFIG")
    if source:
        report.add("configuration", "ok", "file", str(Path(source).expanduser().resolve()))
    else:
        report.add("configuration", "info", "file", "none (environment variables and defaults)",
                   "put settings in a TOML file and pass --config FILE or set ABSTRACTRUNTIME_CONFIG")
    env = sorted(k for k in os.environ if k.startswith("ABSTRACTRUNTIME_"))
    if env:
        report.add("configuration", "ok", "environment", ", ".join(env))
    report.add("configuration", "ok", "store", settings.store or "(the default store)")
    p = settings.plugins
    detail = f"autoload={p.autoload} strict={p.strict} block={list(p.block)} " \
             f"allow={list(p.allow) if p.allow is not None else 'all'}"
    report.add("configuration", "ok", "plugins", detail)


def _lmdb_checks(report: Report, backend: Any) -> None:
    env, path = backend.env, Path(backend.path)
    with env.begin() as txn:
        raw = txn.get(b"m:schema_version")
    _schema(report, int(raw) if raw else None, _expected_schema(backend))
    info, stat = env.info(), env.stat()
    used = (info["last_pgno"] + 1) * stat["psize"]
    report.add("store", "ok", "map", f"{_mib(used)} used of a {_mib(info['map_size'])} map "
               f"({100 * used / info['map_size']:.0f}%; the map grows automatically)")
    lock = path / "lock.mdb"
    if not lock.exists():
        report.add("store", "warning", "lock file", f"{lock} is missing", "open the store once with a command "
                   "that writes (it is created), or copy the store with its lock.mdb")
    elif not os.access(lock, os.W_OK):
        report.add("store", "warning", "lock file", f"{lock} is not writable by you: only read-only commands "
                   "work", "run as the store's owner, or fix the file's permissions")
    else:
        report.add("store", "ok", "lock file", str(lock))
    readers = [line for line in env.readers().splitlines()[1:] if line.strip()]
    stale = [r for r in readers if r.split() and r.split()[0].isdigit() and not _alive(int(r.split()[0]))]
    if stale:
        report.add("store", "warning", "readers", f"{len(stale)} reader slot(s) of dead processes",
                   "open the store with any writing command: LMDB clears stale readers")
    report.add("store", "ok", "readers", f"{info['num_readers']} of {info['max_readers']} reader slots in use")
    _disk(report, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sqlite_checks(report: Report, backend: Any) -> None:
    path = Path(getattr(backend, "path", ""))
    if not str(path) or not path.exists():
        return
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    except sqlite3.Error:
        row, mode = None, "?"
    finally:
        conn.close()
    _schema(report, int(row[0]) if row else None, _expected_schema(backend))
    journals = [p for p in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")) if p.exists()]
    detail = f"journal mode {mode}" + (f"; {', '.join(p.name for p in journals)} present" if journals else "")
    report.add("store", "ok", "journal", detail)
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        report.add("store", "warning", "permissions", f"{path} (or its directory) is not writable by you: only "
                   "read-only commands work", "run as the store's owner, or fix the permissions")
    _disk(report, path.parent)


def _expected_schema(backend: Any) -> Optional[int]:
    """The schema version the store's module writes (``SCHEMA_VERSION`` beside its backend class)."""
    return getattr(sys.modules.get(type(backend).__module__), "SCHEMA_VERSION", None)


def _schema(report: Report, found: Optional[int], expected: Optional[int]) -> None:
    if expected is None:
        report.add("store", "info", "schema version", f"{found} (the store does not say which it expects)")
    elif found is None:
        report.add("store", "warning", "schema version", "not recorded (a store from 0.4.2, or not yet written)",
                   "open it once with a command that writes: it is upgraded in place")
    elif found < expected:
        report.add("store", "warning", "schema version", f"{found}; this version writes {expected}",
                   "open it once with a command that writes: it is upgraded in place")
    elif found > expected:
        report.add("store", "error", "schema version", f"{found}; this version reads up to {expected}",
                   "upgrade abstractruntime (pip install -U abstractruntime)")
    else:
        report.add("store", "ok", "schema version", str(found))


def _disk(report: Report, path: Path) -> None:
    free = shutil.disk_usage(path).free
    status = "ok" if free > 512 * 1024 * 1024 else "warning"
    report.add("store", status, "disk", f"{_mib(free)} free on the disk of {path}",
               "" if status == "ok" else "free disk space: a full disk stops every commit")


def check_store(report: Report, settings: Any) -> None:
    from abstractruntime.runtime import Runtime

    read_only = attrs.evolve(settings, store_options={**settings.store_options, "read_only": True})
    try:
        runtime = Runtime(settings=read_only)
    except Exception as exc:  # noqa: BLE001 - every reason is a finding
        text = " ".join(str(exc).split())
        if text.startswith("No ") and "Nothing was created" in text:
            report.add("store", "warning", "opens", text, "the first command that writes creates it (e.g. a "
                       "host's Runtime, `flow run`); or check --store / the configuration")
        else:
            report.add("store", "error", "opens", f"{type(exc).__name__}: {text}")
        return
    try:
        backend = runtime.backend
        report.add("store", "ok", "opens", str(getattr(backend, "where", None) or type(backend).__name__))
        if hasattr(backend, "env") and hasattr(backend, "path"):
            _lmdb_checks(report, backend)
        elif type(backend).__module__.startswith("abstractruntime_sqlite"):
            _sqlite_checks(report, backend)
    finally:
        runtime.close()


def check_plugins(report: Report, runtime: Any) -> None:
    infos = runtime.plugins()
    loaded = [i.name for i in infos if i.status == "loaded"]
    report.add("plugins", "ok", "loaded", f"{len(loaded)}: {', '.join(sorted(loaded))}")
    for info in infos:
        if info.status == "failed":
            report.add("plugins", "error", info.name, f"failed: {info.error}",
                       f"install what it needs (the error says what), or block it: [abstractruntime.plugins] "
                       f"block = [\"{info.name}\"]")
        elif info.status != "loaded":
            report.add("plugins", "info", info.name, info.status)


def check_optional(report: Report, runtime: Any, settings: Any) -> None:
    loaded = {i.name for i in runtime.plugins() if i.status == "loaded"}
    store = (settings.store or "").split(":", 1)[0].lower()
    used = {
        "postgres": store in ("postgres", "postgresql"),
        "provenance": bool({"signing_key_path", "public_key_path"} & set(settings.options_for("provenance")))
        or bool(os.environ.get("ABSTRACTRUNTIME_SIGNING_KEY")),
        "abstractcore": bool(settings.options_for("abstractcore")),
        "kg_memory": bool(settings.options_for("kg_memory")),
        "cli": True,
    }
    for feature, (extra, modules, what) in OPTIONAL_FEATURES.items():
        if feature not in loaded:
            continue
        missing = [dist for module, dist in modules if importlib.util.find_spec(module) is None]
        install = f"pip install 'abstractruntime[{extra}]'" if extra else "pip install abstractruntime"
        if not missing:
            report.add("optional dependencies", "ok", feature, f"{what}: " + ", ".join(
                f"{dist} {_version(dist)}" for _m, dist in modules))
        elif used.get(feature):
            report.add("optional dependencies", "error", feature,
                       f"{what}: the configuration uses it but {', '.join(missing)} is not installed", install)
        else:
            report.add("optional dependencies", "info", feature, f"{what}: not available ({', '.join(missing)} "
                       f"not installed)", install)


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def render(report: Report) -> None:
    from abstractruntime_pluginkit.console import color_enabled, rich_console

    console = rich_console() if color_enabled(sys.stdout) else None
    styles = {"ok": "green", "info": "cyan", "warning": "yellow", "error": "bold red"}
    section = None
    for c in report.checks:
        if c["section"] != section:
            section = c["section"]
            if console is None:
                print(section)
            else:
                console.print(section, style="bold")
        line = f"  {c['status']:<8}{c['check']}: {c['detail']}"
        if console is None:
            print(line)
        else:
            console.print(f"  [{styles[c['status']]}]{c['status']:<8}[/]{c['check']}: {c['detail']}", markup=True,
                          highlight=False, soft_wrap=True)
        if c["fix"] and c["status"] != "ok":
            print(f"          fix: {c['fix']}")
    n = report.problems
    print(f"{n} problem(s) found: fix them as said above" if n else "no problems found")


def doctor(args: Any, runtime: Any) -> int:
    settings = getattr(args, "cli_settings", None) or runtime.settings
    report = Report()
    check_configuration(report, settings, getattr(args, "config", None))
    check_store(report, settings)
    check_plugins(report, runtime)
    check_optional(report, runtime, settings)
    if args.json:
        emit_json({"ok": report.problems == 0, "problems": report.problems, "checks": report.checks})
    else:
        render(report)
    return 1 if report.problems else 0


__all__ = ["doctor", "Report", "OPTIONAL_FEATURES"]
