"""Workflows and a side-effecting "charge" plugin for the scale-out fault suite (importable by worker processes).

The worker processes get the plugin through an ordinary entry point (group ``abstractruntime``, object
``scaleout_flows:PAYMENTS``) declared by a throwaway ``*.dist-info`` directory the test puts on ``PYTHONPATH``.
The "payment provider" is a directory (``SCALEOUT_PROVIDER_DIR``): every execution appends
``<idempotency key> <pid>`` to ``attempts.log``; a charge happens once per idempotency key (the receipt
``<sha1(key)>.json`` is hard-linked into place: atomic and exclusive, even under SIGKILL), the way a real API with an Idempotency-Key header de-duplicates.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from abstractruntime import (Effect, EffectHandlerDescriptor, EffectOutcome, EffectType, StepPlan, WorkflowSpec,
                             hookimpl)

PROVIDER_ENV = "SCALEOUT_PROVIDER_DIR"
KINDS = ("timer", "event", "user", "sync_child", "async_child")


def event_name(run_id: str) -> str:
    return f"go-{run_id}"


class PaymentsPlugin:
    __name__ = "scaleout_payments"

    def _dir(self) -> Path:
        d = Path(os.environ[PROVIDER_ENV])
        d.mkdir(parents=True, exist_ok=True)
        return d

    def charge(self, call):
        d = self._dir()
        key = call.idempotency_key
        line = f"{key} {os.getpid()}\n".encode()
        fd = os.open(d / "attempts.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one O_APPEND write: lines from concurrent processes do not interleave
        finally:
            os.close(fd)
        receipt = d / (hashlib.sha1(key.encode()).hexdigest() + ".json")
        tmp = d / f"{receipt.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps({"key": key, "charged": call.effect.payload["amount"], "pid": os.getpid()}))
        try:
            os.link(tmp, receipt)  # the charge: atomic, complete, and exclusive (fails if already charged)
        except FileExistsError:  # de-duplicated by the provider
            pass
        finally:
            tmp.unlink()
        return EffectOutcome.completed({"charged": call.effect.payload["amount"], "key": key})

    @hookimpl
    def abstractruntime_register_effect_handlers(self):
        return [EffectHandlerDescriptor("charge", self.charge, side_effects=True)]


PAYMENTS = PaymentsPlugin()


def _charge(run, ctx):
    return StepPlan(node_id="charge", effect=Effect("charge", {"amount": 42}, "receipt"), next_node="wait")


def _wait(run, ctx):
    kind = run.vars["kind"]
    if kind == "timer":
        until = (datetime.now(timezone.utc) + timedelta(seconds=float(run.vars.get("delay", 1.0)))).isoformat()
        effect = Effect(EffectType.WAIT_UNTIL, {"until": until})
    elif kind == "event":
        effect = Effect(EffectType.WAIT_EVENT, {"name": event_name(run.run_id), "scope": "global"}, "event")
    elif kind == "user":
        effect = Effect(EffectType.ASK_USER, {"prompt": "ok?"}, "answer")
    elif kind == "sync_child":
        effect = Effect(EffectType.START_SUBWORKFLOW, {"workflow_id": "so_child", "vars": {"n": 1}}, "child")
    elif kind == "async_child":
        effect = Effect(EffectType.START_SUBWORKFLOW,
                        {"workflow_id": "so_child", "vars": {"n": 2}, "async": True, "wait": True}, "child")
    else:  # pragma: no cover
        raise ValueError(kind)
    return StepPlan(node_id="wait", effect=effect, next_node="done")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"kind": run.vars["kind"], "receipt": run.vars.get("receipt")})


def _child_work(run, ctx):
    return StepPlan(node_id="work", effect=Effect("charge", {"amount": 1}, "receipt"), next_node="end")


def _child_end(run, ctx):
    return StepPlan(node_id="end", complete_output={"answer": f"child {run.vars.get('n')}"})


MAIN = WorkflowSpec(workflow_id="so_main", entry_node="charge", nodes={"charge": _charge, "wait": _wait, "done": _done})
CHILD = WorkflowSpec(workflow_id="so_child", entry_node="work", nodes={"work": _child_work, "end": _child_end})


def _ask(run, ctx):
    return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "go?"}, "answer"), next_node="fin")


def _fin(run, ctx):
    return StepPlan(node_id="fin", complete_output={"answer": run.vars.get("answer")})


#: S2 of the benchmark: start -> ASK_USER -> resume(max_steps=0) -> complete (driven by the workers)
S2 = WorkflowSpec(workflow_id="so_s2", entry_node="ask", nodes={"ask": _ask, "fin": _fin})



def _busy(run, ctx):
    time.sleep(float(run.vars.get("step_s", 0.02)))  # a worker holding the run: a commit every ~step_s
    if run.step >= int(run.vars.get("steps", 10_000)):
        return StepPlan(node_id="busy", complete_output={"steps": run.step})
    return StepPlan(node_id="busy", next_node="busy")


#: the benchmark's takeover probe: many short steps, so a worker holds it continuously until killed
BUSY = WorkflowSpec(workflow_id="so_busy", entry_node="busy", nodes={"busy": _busy})

ALL = (MAIN, CHILD, S2, BUSY)


def install_entry_point(target_dir: str) -> str:
    """Write a throwaway ``scaleout_flows_plugin.dist-info`` declaring ``PAYMENTS`` as an abstractruntime plugin
    into ``target_dir`` (put it on PYTHONPATH together with this module's directory); returns ``target_dir``."""
    dist = Path(target_dir) / "scaleout_flows_plugin-0.0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: scaleout-flows-plugin\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text("[abstractruntime]\nscaleout_payments = scaleout_flows:PAYMENTS\n")
    return target_dir
