"""``abstractruntime flow ...``: pack, inspect, validate, run and resume ``.flow`` bundles.

``flow run`` compiles the bundle, starts a run on the configured store and drives it (subflow children included)
until it finishes or waits for the outside world; then it prints the output, or what the run waits for and the
exact command that resumes it. The run remembers which bundle it came from (``vars._visualflow``), so
``flow resume RUN_ID --response ...`` needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from abstractruntime.errors import ValidationError
from abstractruntime.models import RunStatus, WaitReason
from abstractruntime_pluginkit import WorkflowRegistry, spec_for_run
from abstractruntime_pluginkit.jsonload import JsonTooDeepError, loads_bounded

if TYPE_CHECKING:  # pragma: no cover
    from .reader import WorkflowBundle

# The manifest, packer and reader are imported by the command that runs (every command's arguments are declared
# whenever the command line starts).

META_KEY = "_visualflow"


def _out(data: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    elif isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        for key, value in data.items():
            if isinstance(value, (dict, list)):
                value = json.dumps(value, ensure_ascii=False, default=str)
            print(f"{key.ljust(width)}  {'' if value is None else value}")
    else:
        print(data)


# --- pack -----------------------------------------------------------------------------------------------------------
def _pick_root(directory: Path) -> Path:
    from .manifest import WorkflowBundleError
    from .packer import reachable_subflow_ids

    files = sorted(p for p in directory.glob("*.json") if p.is_file())
    flows: Dict[str, Tuple[Path, Dict[str, Any]]] = {}
    for p in files:
        try:
            data = loads_bounded(p.read_text(encoding="utf-8"), what=str(p))
        except JsonTooDeepError:
            raise
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("id"), str) and isinstance(data.get("nodes"), list):
            flows[data["id"]] = (p, data)
    if not flows:
        raise WorkflowBundleError(f"{directory}: no VisualFlow JSON files (*.json with 'id' and 'nodes')")
    referenced = {sub for _p, data in flows.values() for sub in reachable_subflow_ids(data).values() if sub}
    roots = [fid for fid in flows if fid not in referenced]
    if len(roots) != 1:
        raise WorkflowBundleError(
            f"{directory}: cannot tell the root flow ({', '.join(roots) or 'every flow is a subflow'}); "
            f"pass --root FILE.json")
    return flows[roots[0]][0]


def _pack_args(p: Any) -> None:
    p.add_argument("source", help="a directory of VisualFlow JSON files, or the root flow's JSON file")
    p.add_argument("-o", "--output", required=True, help="the .flow file to write")
    p.add_argument("--root", help="the root flow JSON file (default: the flow no other flow calls)")
    p.add_argument("--bundle-id")
    p.add_argument("--bundle-version", default="0.0.0")
    p.add_argument("--entry", action="append", help="an entrypoint flow id (repeatable; default: the root)")


def _pack(args: Any, runtime: Any) -> int:
    from .packer import pack_workflow_bundle

    src = Path(args.source)
    if args.root:
        root = Path(args.root)
        flows_dir = src if src.is_dir() else root.parent
    elif src.is_dir():
        root, flows_dir = _pick_root(src), src
    else:
        root, flows_dir = src, src.parent
    packed = pack_workflow_bundle(root_flow_json=root, out_path=args.output, bundle_id=args.bundle_id,
                                  bundle_version=args.bundle_version, flows_dir=flows_dir, entrypoints=args.entry)
    m = packed.manifest
    _out({"path": str(packed.path), "bundle": m.bundle_ref, "flows": sorted(m.flows),
          "default_entrypoint": m.default_entrypoint}, args.json)
    return 0


# --- inspect / validate ---------------------------------------------------------------------------------------------
def _bundle_arg(p: Any) -> None:
    p.add_argument("bundle", help="a .flow file or an unpacked bundle directory")


def _inspect(args: Any, runtime: Any) -> int:
    from .manifest import workflow_bundle_manifest_to_dict
    from .reader import open_workflow_bundle

    m = open_workflow_bundle(args.bundle).manifest
    if args.json:
        _out(workflow_bundle_manifest_to_dict(m), True)
    else:
        _out({"bundle": m.bundle_ref, "created_at": m.created_at, "default_entrypoint": m.default_entrypoint,
              "entrypoints": [e.flow_id + (f" ({e.name})" if e.name and e.name != e.flow_id else "")
                              for e in m.entrypoints],
              "flows": m.flows, "assets": m.assets, "metadata": m.metadata}, False)
    return 0


def _compile(bundle: "WorkflowBundle", root: str, runtime: Any, strict: bool = False) -> Dict[str, Any]:
    from abstractruntime_visualflow import compile_visualflow_tree

    return compile_visualflow_tree(root_id=root, flows_by_id=bundle.flows(), runtime=runtime, strict=strict)


def _validate_args(p: Any) -> None:
    _bundle_arg(p)
    p.add_argument("--strict", action="store_true", help="unknown node types are errors")


def _validate(args: Any, runtime: Any) -> int:
    from abstractruntime_visualflow import compile_visualflow

    from .reader import open_workflow_bundle, verify_bundle_contents

    bundle = open_workflow_bundle(args.bundle)
    verify_bundle_contents(bundle)
    problems: List[str] = []
    flows = bundle.flows()
    for fid, data in flows.items():
        try:
            compile_visualflow(data, runtime=runtime, strict=args.strict)
        except ValueError as exc:
            problems.append(f"{fid}: {exc}")
    report = {"bundle": bundle.manifest.bundle_ref, "flows": len(flows), "valid": not problems,
              "problems": problems}
    _out(report, args.json)
    return 0 if not problems else 1


# --- run / resume ---------------------------------------------------------------------------------------------------
def _prepare(runtime: Any, bundle_path: str, entry: Optional[str]) -> Tuple[str, Dict[str, Any], "WorkflowBundle"]:
    from .manifest import WorkflowBundleError
    from .reader import open_workflow_bundle, verify_bundle_contents

    bundle = open_workflow_bundle(bundle_path)
    verify_bundle_contents(bundle)
    m = bundle.manifest
    root = entry or m.default_entrypoint or m.entrypoints[0].flow_id
    if root not in m.flows:
        raise WorkflowBundleError(f"{bundle_path}: no flow {root!r} (flows: {', '.join(sorted(m.flows))})")
    specs = _compile(bundle, root, runtime)
    registry = runtime.workflow_registry
    if registry is None:
        registry = WorkflowRegistry()
        runtime.set_workflow_registry(registry)
    for wid, spec in specs.items():
        if wid not in registry:
            registry.register(spec)
    return root, specs, bundle


def _resume_command(args: Any, run_id: str, wait: Any) -> str:
    words = ["abstractruntime"]
    if getattr(args, "store", None):
        words += ["--store", args.store]
    if getattr(args, "config", None):
        words += ["--config", args.config]
    words += ["flow", "resume", run_id]
    if wait.reason is WaitReason.USER:
        example = wait.choices[0] if wait.choices else "<your answer>"
        words += ["--response", example]
    else:
        words += ["--payload", '{"...": "..."}']
    return " ".join(shlex.quote(w) for w in words)


def _report(args: Any, runtime: Any, run_id: str) -> int:
    from abstractruntime_visualflow.drive import blocking_run

    state = runtime.get_state(run_id)
    if state.status is RunStatus.COMPLETED:
        if args.json:
            _out({"run_id": run_id, "status": "completed", "output": state.output}, True)
        else:
            print(f"run {run_id} completed")
            print(json.dumps(state.output, indent=2, ensure_ascii=False, default=str))
        return 0
    if state.status is RunStatus.WAITING:
        blocked = blocking_run(runtime, run_id)
        wait = blocked.waiting
        info: Dict[str, Any] = {"run_id": run_id, "status": "waiting", "waiting_run_id": blocked.run_id,
                                "reason": wait.reason.value if wait else None,
                                "wait_key": wait.wait_key if wait else None}
        if wait is not None and wait.prompt:
            info["prompt"] = wait.prompt
        if wait is not None and wait.choices:
            info["choices"] = wait.choices
        if wait is not None and wait.until:
            info["until"] = wait.until
        if wait is not None and wait.reason is not WaitReason.UNTIL:
            info["resume_with"] = _resume_command(args, blocked.run_id, wait)
        if args.json:
            _out(info, True)
        else:
            print(f"run {run_id} is waiting ({info['reason']})")
            if info.get("prompt"):
                print(f"prompt: {info['prompt']}")
            if info.get("choices"):
                print(f"choices: {', '.join(map(str, info['choices']))}")
            if info.get("until"):
                print(f"until: {info['until']} (run `abstractruntime flow resume {run_id}` after that)")
            if info.get("resume_with"):
                print(f"resume with: {info['resume_with']}")
        return 0
    _out({"run_id": run_id, "status": state.status.value, "error": state.error}, args.json)
    return 1


def _run_args(p: Any) -> None:
    p.add_argument("bundle", help="a .flow file or an unpacked bundle directory")
    p.add_argument("--entry", help="the entrypoint flow id (default: the bundle's default entrypoint)")
    p.add_argument("--input", default="{}", help="the run's input variables as a JSON object")
    p.add_argument("--session", help="session id of the run")


def _run(args: Any, runtime: Any) -> int:
    from abstractruntime_visualflow.drive import drive

    try:
        inputs = loads_bounded(args.input, what="--input")
    except JsonTooDeepError:
        raise
    except ValueError as exc:
        raise ValidationError(f"--input is not valid JSON: {exc}") from None
    if not isinstance(inputs, dict):
        raise ValidationError("--input must be a JSON object, e.g. '{\"numbers\": [1, 2]}'")
    bundle_path = str(Path(args.bundle).resolve())
    root, specs, bundle = _prepare(runtime, bundle_path, args.entry)
    digest = hashlib.sha256(Path(bundle_path).read_bytes()).hexdigest() if Path(bundle_path).is_file() else None
    inputs[META_KEY] = {"bundle": bundle_path, "entry": root, "bundle_ref": bundle.manifest.bundle_ref,
                        "sha256": digest}
    run_id = runtime.start(workflow=specs[root], vars=inputs, session_id=args.session)
    drive(runtime, run_id)
    return _report(args, runtime, run_id)


def _resume_args(p: Any) -> None:
    p.add_argument("run_id")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--response", help="the answer to a question (sent as {\"response\": ...})")
    group.add_argument("--payload", help="the resume payload as a JSON object (events)")
    p.add_argument("--flow", help="the .flow bundle (default: the one the run was started from)")


def prepare_run_bundle(runtime: Any, run_id: str, flow: Optional[str] = None) -> Tuple[Any, Any, bool]:
    """Compile and register (in ``runtime.workflow_registry``) the flows of the bundle ``run_id``'s root run was
    started from by ``flow run`` (or of ``flow``). Returns ``(state, root, changed)``; ``changed``: the bundle file
    differs from the one the run started with. Used by ``flow resume`` and the web console."""
    from abstractruntime_visualflow.drive import root_run

    state = runtime.get_state(run_id)
    root = root_run(runtime, run_id)
    meta = root.vars.get(META_KEY) if isinstance(root.vars.get(META_KEY), dict) else {}
    bundle_path = flow or meta.get("bundle")
    if not bundle_path:
        raise ValidationError(f"run {root.run_id} was not started by `flow run`; pass --flow NAME.flow")
    changed = bool(not flow and meta.get("sha256") and Path(bundle_path).is_file()
                   and hashlib.sha256(Path(bundle_path).read_bytes()).hexdigest() != meta["sha256"])
    _prepare(runtime, bundle_path, meta.get("entry"))
    return state, root, changed


def _resume(args: Any, runtime: Any) -> int:
    from abstractruntime_visualflow.drive import drive

    state, root, changed = prepare_run_bundle(runtime, args.run_id, args.flow)
    if changed:
        print(f"warning: {root.vars[META_KEY]['bundle']} changed since the run started", file=sys.stderr)
    registry = runtime.workflow_registry
    if state.status is RunStatus.WAITING and state.waiting is not None and \
            state.waiting.reason is not WaitReason.SUBWORKFLOW:
        if args.payload is not None:
            try:
                payload = loads_bounded(args.payload, what="--payload")
            except JsonTooDeepError:
                raise
            except ValueError as exc:
                raise ValidationError(f"--payload is not valid JSON: {exc}") from None
            if not isinstance(payload, dict):
                raise ValidationError("--payload must be a JSON object")
        elif args.response is not None:
            payload = {"response": args.response}
        elif state.waiting.reason is WaitReason.UNTIL:
            payload = None
        else:
            raise ValidationError("the run waits for an answer: pass --response TEXT or --payload JSON")
        if payload is not None:
            spec = spec_for_run(registry, state)
            runtime.resume(workflow=spec, run_id=state.run_id, wait_key=state.waiting.wait_key, payload=payload,
                           max_steps=0)
    drive(runtime, state.run_id)
    drive(runtime, root.run_id)
    return _report(args, runtime, root.run_id)


def _friendly(fn: Any) -> Any:
    """Missing files are user errors: report them like the CLI reports other usage errors (a ``ValidationError``,
    exit code 2)."""

    def run(args: Any, runtime: Any) -> int:
        try:
            return fn(args, runtime)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ValidationError(str(exc)) from None

    return run


def cli_commands() -> List[Any]:
    from abstractruntime.descriptors import CliCommandDescriptor

    return [
        CliCommandDescriptor("flow pack", "pack VisualFlow JSON files into a .flow bundle", _pack_args,
                             _friendly(_pack), store="none"),
        CliCommandDescriptor("flow inspect", "show a .flow bundle's manifest", _bundle_arg, _friendly(_inspect),
                             store="none"),
        CliCommandDescriptor("flow validate", "check a .flow bundle: manifest, files, every flow compiles",
                             _validate_args, _friendly(_validate), store="none"),
        CliCommandDescriptor("flow run", "run a .flow bundle on the configured store", _run_args, _friendly(_run)),
        CliCommandDescriptor("flow resume", "answer a waiting flow run and continue it", _resume_args,
                             _friendly(_resume)),
    ]


__all__ = ["cli_commands", "prepare_run_bundle", "META_KEY"]
