"""A workflow for the schedules tests, and a scheduler process (``python schedule_flows.py STORE_URL SECONDS``):
a scheduled runtime on the store that fires and drives schedules for SECONDS, then prints its stats as JSON."""

from __future__ import annotations

import json
import sys
import time

from abstractruntime import StepPlan, WorkflowSpec


def _make(run, ctx):
    return StepPlan("make", complete_output={"fire_time": run.vars["_runtime"]["schedule"]["fire_time"]})


REPORT = WorkflowSpec("report", "make", {"make": _make})


def main(url: str, seconds: float) -> None:
    import structlog

    from abstractruntime_scheduler import create_scheduled_runtime

    with structlog.testing.capture_logs() as logs:  # which fires this process created, which it found taken
        sr = create_scheduled_runtime(store=url, workflows=[REPORT], poll_interval_s=0.02,
                                      settings={"plugin_options": {"schedules": {"poll_interval_s": 0}}})
        print("ready", flush=True)
        time.sleep(seconds)
        sr.stop()
    events = [e["event"] for e in logs]
    sr.close()
    print(json.dumps({"runs_resumed": sr.stats.runs_resumed, "errors": sr.stats.errors,
                      "fired": events.count("schedule_fired"), "taken": events.count("schedule_fire_taken")}),
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
