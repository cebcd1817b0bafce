"""Library events reach a host's stdlib logging with their fields as LogRecord attributes (a JSON formatter gets
``run_id``, ``node``, ...), and keep a readable ``key=value`` message."""

from __future__ import annotations

import json
import logging

from abstractruntime import Effect, EffectType, Runtime, StepPlan, WorkflowSpec
from abstractruntime.logs import get_logger

STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """What a host's JSON formatter does: the record's own fields plus every extra attribute."""

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in vars(record).items() if k not in STANDARD}
        return json.dumps({"logger": record.name, "level": record.levelname, "message": record.getMessage(), **extra},
                          default=str)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def _collect(logger_name: str = "abstractruntime") -> Collect:
    handler = Collect()
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    return handler


def test_a_json_formatter_gets_the_event_fields_as_record_attributes():
    flow = WorkflowSpec(workflow_id="w", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect(type=EffectType.ANSWER_USER, payload={"message": "x"}),
                                       next_node="b"),
        "b": lambda run, ctx: (_ for _ in ()).throw(RuntimeError("boom"))})
    handler = _collect()
    logger = logging.getLogger("abstractruntime")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with Runtime.from_config({"store": "memory://"}) as rt:
            run_id = rt.start(workflow=flow)
            rt.tick(workflow=flow, run_id=run_id)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    by_event = {}
    for line in handler.lines:
        by_event.setdefault(line.get("event"), []).append(line)
    assert by_event["run_started"][0]["run_id"] == run_id and by_event["run_started"][0]["workflow"] == "w"
    (step,) = by_event["step"]
    assert {k: step[k] for k in ("run_id", "node", "step", "status", "logger", "level")} == {
        "run_id": run_id, "node": "a", "step": 1, "status": "running", "logger": "abstractruntime", "level": "DEBUG"}
    assert step["message"] == f"event='step' run_id='{run_id}' node='a' step=1 status='running'"
    (failed,) = by_event["node_failed"]
    assert failed["level"] == "WARNING" and failed["node"] == "b" and "boom" in failed["error"]


def test_a_field_named_like_a_logrecord_attribute_is_passed_with_an_underscore():
    handler = _collect("abstractruntime.testing_fields")
    try:
        get_logger("abstractruntime.testing_fields").warning("odd_fields", name="mine", lineno=3, run_id="r1")
    finally:
        logging.getLogger("abstractruntime.testing_fields").removeHandler(handler)
    (line,) = handler.lines
    assert line["logger"] == "abstractruntime.testing_fields"  # LogRecord's own name is kept
    assert line["name_"] == "mine" and line["lineno_"] == 3 and line["run_id"] == "r1"
    assert line["message"] == "event='odd_fields' name='mine' lineno=3 run_id='r1'"
