"""Every hook in hookspecs.py fires with its documented arguments; observer errors are logged (strict: raised)."""

from __future__ import annotations

from datetime import datetime

import pytest
from structlog.testing import capture_logs

from abstractruntime import (
    Effect,
    EffectCall,
    EffectOutcome,
    EffectType,
    RunState,
    RunStatus,
    Runtime,
    StepPlan,
    StepRecord,
    StoreDescriptor,
    StoreLocation,
    hookimpl,
)
from abstractruntime import hookspecs
from abstractruntime.errors import RunNotWaitingError
from abstractruntime_inmemory.store import MemoryBackend

from kernel_support import Counter, HandlerPlugin, effect_node, runtime_on, workflow


class Recorder:
    """Implements every observer hook and records the calls."""

    __name__ = "recorder"

    def __init__(self) -> None:
        self.calls = []

    @hookimpl
    def abstractruntime_before_step(self, run, node_id):
        self.calls.append(("before_step", {"run": run, "node_id": node_id, "revision": run.revision}))

    @hookimpl
    def abstractruntime_after_step(self, run, node_id, plan, records):
        self.calls.append(("after_step", {"run": run, "node_id": node_id, "plan": plan, "records": list(records)}))

    @hookimpl
    def abstractruntime_step_error(self, run, node_id, error):
        self.calls.append(("step_error", {"run": run, "node_id": node_id, "error": error}))

    @hookimpl
    def abstractruntime_run_status_changed(self, run, previous_status):
        self.calls.append(("run_status_changed", {"status": run.status, "previous_status": previous_status,
                                                   "run": run}))

    @hookimpl
    def abstractruntime_ledger_appended(self, run_id, records):
        self.calls.append(("ledger_appended", {"run_id": run_id, "records": list(records)}))

    def of(self, name):
        return [kw for n, kw in self.calls if n == name]


def three_node_workflow():
    return workflow({
        "a": lambda run, ctx: StepPlan(node_id="a", next_node="b"),
        "b": effect_node("b", Effect(EffectType.ANSWER_USER, {"message": "hi"}, "said"), next_node="c"),
        "c": lambda run, ctx: StepPlan(node_id="c", complete_output={"ok": True}),
    })


def test_hookspecs_module_declares_the_expected_hooks():
    names = {n for n in dir(hookspecs) if n.startswith("abstractruntime_")}
    assert names == {
        "abstractruntime_register_effect_handlers", "abstractruntime_register_stores",
        "abstractruntime_execute_effect", "abstractruntime_before_step", "abstractruntime_after_step",
        "abstractruntime_step_error", "abstractruntime_run_status_changed", "abstractruntime_ledger_appended",
        "abstractruntime_prepare_resume_payload", "abstractruntime_register_runtime_methods",
        "abstractruntime_register_cli_commands", "abstractruntime_prepare_ledger_records",
        "abstractruntime_poll_wait", "abstractruntime_add_hookspecs", "abstractruntime_prepare_new_run",
        "abstractruntime_fault_point", "abstractruntime_runtime_created", "abstractruntime_api_call",
    }


class RefuseConfig:
    __name__ = "refuse_config"

    def __init__(self) -> None:
        self.seen = []

    @hookimpl
    def abstractruntime_runtime_created(self, runtime):
        self.seen.append(runtime)
        if runtime.settings.options_for("refuse_config").get("retries") == "many":
            from abstractruntime.errors import ConfigurationError

            raise ConfigurationError("plugin_options.refuse_config.retries must be an integer, got 'many'")


def test_runtime_created_fires_once_with_the_built_runtime_and_can_refuse_it(tmp_path):
    plugin = RefuseConfig()
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}, plugins=[plugin])
    assert plugin.seen == [rt] and rt.effect_handler_types()  # handlers and stores were in place
    rt.close()
    from abstractruntime.errors import ConfigurationError

    bad = {"store": f"lmdb://{tmp_path}/db", "plugin_options": {"refuse_config": {"retries": "many"}}}
    with pytest.raises(ConfigurationError, match="retries must be an integer"):
        Runtime.from_config(bad, plugins=[plugin])
    # the refused runtime closed the store it opened: the directory opens again in this process
    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}, plugins=[plugin]) as again:
        assert again.run_store.backend.env is not None


@pytest.mark.parametrize("options, message", [
    ({"provenance": {"algorithm": "no-such-hash"}}, "Unknown hash algorithm"),
    ({"provenance": {"signing_key_path": "/nonexistent/key.pem"}}, "key"),
    ({"artifacts": {"max_inline_bytes": "lots"}}, "max_inline_bytes must be an integer"),
    ({"evidence": {"tool_names": "fetch_url"}}, "tool_names must be a list"),
    ({"abstractcore": {"provider": "ollama"}}, "provider needs 'model'"),
    ({"abstractcore": {"tools": "yolo"}}, "tools must be one of"),
])
def test_builtin_plugins_refuse_a_bad_configuration_at_construction(options, message):
    from abstractruntime.errors import AbstractRuntimeError

    with pytest.raises((AbstractRuntimeError, ValueError), match=message):
        Runtime.from_config({"store": "memory://", "plugin_options": options})


def test_before_step_fires_for_each_step_with_the_last_checkpoint():
    rec = Recorder()
    rt = runtime_on(plugins=[rec])
    wf = three_node_workflow()
    run_id = rt.start(workflow=wf)
    start_revision = rt.get_state(run_id).revision
    rt.tick(workflow=wf, run_id=run_id)
    calls = rec.of("before_step")
    assert [c["node_id"] for c in calls] == ["a", "b", "c"]
    assert all(isinstance(c["run"], RunState) and c["run"].run_id == run_id for c in calls)
    assert calls[0]["revision"] == start_revision
    assert [c["revision"] for c in calls] == sorted(c["revision"] for c in calls)


def test_step_observers_registered_or_removed_during_a_tick_take_effect_at_the_next_step():
    """A tick asks once whether anyone observes steps; a plugin (un)registered during it -- here by a node -- takes
    part from the next step hook call on: ``late``, registered by ``b``'s node, observes ``c`` and ``d`` until ``d``'s
    node removes it; ``later``, registered by ``c``'s node, observes ``c``'s end and ``d``."""
    rec = Recorder()
    rt = runtime_on()
    pm = rt.hooks.plugin_manager

    def node(node_id, next_node, change=None):
        def run_node(run, ctx):
            if change is not None:
                change()
            if next_node is None:
                return StepPlan(node_id=node_id, complete_output={})
            return StepPlan(node_id=node_id, next_node=next_node)
        return run_node

    other = Recorder()
    wf = workflow({"a": node("a", "b"), "b": node("b", "c", lambda: pm.register(rec, name="late")),
                   "c": node("c", "d", lambda: pm.register(other, name="later")),
                   "d": node("d", None, lambda: pm.unregister(name="late"))})
    rt.tick(workflow=wf, run_id=rt.start(workflow=wf))
    assert [c["node_id"] for c in rec.of("before_step")] == ["c", "d"]
    assert [c["node_id"] for c in rec.of("after_step")] == ["c"]  # d: removed by its own node
    assert [c["node_id"] for c in other.of("before_step")] == ["d"]
    assert [c["node_id"] for c in other.of("after_step")] == ["c", "d"]


def test_after_step_receives_new_checkpoint_plan_and_records():
    rec = Recorder()
    rt = runtime_on(plugins=[rec])
    wf = three_node_workflow()
    run_id = rt.start(workflow=wf)
    final = rt.tick(workflow=wf, run_id=run_id)
    calls = rec.of("after_step")
    assert [c["node_id"] for c in calls] == ["a", "b", "c"]
    assert all(isinstance(c["plan"], StepPlan) for c in calls)
    assert calls[0]["records"] == []  # pure transition
    assert [r.status.value for r in calls[1]["records"]] == ["started", "completed"]
    assert all(isinstance(r, StepRecord) for r in calls[1]["records"])
    assert calls[1]["plan"].effect.type is EffectType.ANSWER_USER
    assert calls[1]["run"].current_node == "c"
    assert [r.status.value for r in calls[2]["records"]] == ["completed", "completed"]
    assert calls[2]["run"].status is RunStatus.COMPLETED
    assert calls[2]["run"].revision == final.revision == rt.get_state(run_id).revision
    # records passed to after_step are exactly the ledger
    assert [r.step_id for c in calls for r in c["records"]] == [r["step_id"] for r in rt.get_ledger(run_id)]


def test_step_error_fires_with_the_exception_and_after_step_gets_no_plan():
    rec = Recorder()
    rt = runtime_on(plugins=[rec])
    boom = RuntimeError("node exploded")

    def bad(run, ctx):
        raise boom

    wf = workflow({"bad": bad})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.FAILED
    errors = rec.of("step_error")
    assert len(errors) == 1
    assert errors[0]["error"] is boom and errors[0]["node_id"] == "bad"
    assert errors[0]["run"].run_id == run_id
    # step_error is called before the run is marked FAILED
    names = [n for n, _ in rec.calls]
    assert names.index("step_error") < names.index("run_status_changed")
    after = rec.of("after_step")
    assert len(after) == 1 and after[0]["plan"] is None
    assert [r.status.value for r in after[0]["records"]] == ["failed", "completed"]


def test_step_error_fires_for_an_unknown_node():
    rec = Recorder()
    rt = runtime_on(plugins=[rec])
    wf = workflow({"a": lambda run, ctx: StepPlan(node_id="a", next_node="zzz")})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    errors = rec.of("step_error")
    assert len(errors) == 1 and errors[0]["node_id"] == "zzz"
    assert isinstance(errors[0]["error"], KeyError)


@pytest.mark.parametrize("durability", ["step", "barrier"])
def test_run_status_changed_reports_previous_status(durability):
    """Called once per commit whose status differs from the last committed one: with durability "step" every
    step is a commit; with "barrier" the resume and the steps it runs are one commit (WAITING -> COMPLETED)."""
    rec = Recorder()
    rt = runtime_on(plugins=[rec], settings={"durability": durability})
    wf = workflow({
        "ask": effect_node("ask", Effect(EffectType.ASK_USER, {"prompt": "?"}, "a"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={}),
    })
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    rt.resume(workflow=wf, run_id=run_id, wait_key=state.waiting.wait_key, payload={})
    transitions = [(c["previous_status"], c["status"]) for c in rec.of("run_status_changed")]
    assert transitions == ([
        (RunStatus.RUNNING, RunStatus.WAITING),
        (RunStatus.WAITING, RunStatus.RUNNING),
        (RunStatus.RUNNING, RunStatus.COMPLETED),
    ] if durability == "step" else [(RunStatus.RUNNING, RunStatus.WAITING), (RunStatus.WAITING, RunStatus.COMPLETED)])
    assert all(c["run"].run_id == run_id for c in rec.of("run_status_changed"))


def test_run_status_changed_fires_on_cancel():
    rec = Recorder()
    rt = runtime_on(plugins=[rec])
    wf = three_node_workflow()
    run_id = rt.start(workflow=wf)
    rt.cancel_run(run_id)
    assert [(c["previous_status"], c["status"]) for c in rec.of("run_status_changed")] == [
        (RunStatus.RUNNING, RunStatus.CANCELLED)]


@pytest.mark.parametrize("durability", ["step", "barrier"])
@pytest.mark.parametrize("side_effects", [False, True])
def test_ledger_appended_fires_with_the_committed_records_in_order(side_effects, durability):
    rec = Recorder()
    rt = runtime_on(plugins=[rec, HandlerPlugin("echo_plugin", "echo", Counter(), side_effects=side_effects)],
                    settings={"durability": durability})
    wf = workflow({
        "a": lambda run, ctx: StepPlan(node_id="a", next_node="b"),
        "b": effect_node("b", Effect("echo", {"x": 1}, "r"), next_node="c"),
        "c": lambda run, ctx: StepPlan(node_id="c", complete_output={"ok": True}),
    })
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    calls = rec.of("ledger_appended")
    assert calls and all(c["run_id"] == run_id for c in calls)
    assert all(c["records"] for c in calls)  # never called with nothing
    appended = [(r.step_id, r.status.value) for c in calls for r in c["records"]]
    assert appended == [(r["step_id"], r["status"]) for r in rt.get_ledger(run_id)]
    # a side-effecting handler's reservation is committed (and announced) on its own, before the outcome; with
    # durability "barrier" the steps between barriers are one commit (the end of the tick)
    assert len(calls) == {("step", False): 2, ("step", True): 3, ("barrier", False): 1,
                          ("barrier", True): 2}[durability, side_effects]


class OutcomeWrapper:
    __name__ = "outcome_wrapper"

    def __init__(self) -> None:
        self.seen = []

    @hookimpl(wrapper=True)
    def abstractruntime_execute_effect(self, call):
        self.seen.append(call)
        outcome = yield
        if call.effect.type_value == "answer_user":
            return EffectOutcome.completed({"wrapped": outcome.result})
        return outcome


def test_execute_effect_wrapper_observes_the_call_and_changes_the_outcome():
    wrapper = OutcomeWrapper()
    rt = runtime_on(plugins=[wrapper])
    wf = workflow({
        "say": effect_node("say", Effect(EffectType.ANSWER_USER, {"message": "hi"}, "said"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"said": run.vars["said"]}),
    })
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.output == {"said": {"wrapped": {"message": "hi", "level": "message"}}}
    assert len(wrapper.seen) == 1
    call = wrapper.seen[0]
    assert isinstance(call, EffectCall)
    assert call.node_id == "say" and call.default_next_node == "done" and call.attempt == 1
    assert call.runtime is rt and call.run.run_id == run_id
    ledger = rt.get_ledger(run_id)
    assert call.idempotency_key == ledger[0]["idempotency_key"]
    assert ledger[1]["result"] == {"wrapped": {"message": "hi", "level": "message"}}


class RaisingWrapper:
    __name__ = "raising_wrapper"

    @hookimpl(wrapper=True)
    def abstractruntime_execute_effect(self, call):
        yield
        raise RuntimeError("provenance store offline")


def test_execute_effect_wrapper_that_raises_fails_the_attempt():
    rt = runtime_on(plugins=[RaisingWrapper()])
    wf = workflow({"say": effect_node("say", Effect(EffectType.ANSWER_USER, {"message": "hi"}), next_node="x")})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.FAILED
    assert state.error == "Effect failed after 1 attempt: Effect handler raised exception: provenance store offline"


def test_register_effect_handlers_is_collected_once_and_handler_gets_an_effect_call():
    counter = Counter({"greeted": True})
    plugin = HandlerPlugin("greeter", "greet_hook_test", counter, side_effects=False)
    rt = runtime_on(plugins=[plugin])
    assert plugin.registrations == 1
    assert rt.effect_handler_types()["greet_hook_test"] == "greeter"
    wf = workflow({"g": effect_node("g", Effect("greet_hook_test", {"who": "Ada"}, "r"), next_node="end"),
                   "end": lambda run, ctx: StepPlan(node_id="end", complete_output={"r": run.vars["r"]})})
    run_id = rt.start(workflow=wf, session_id="s")
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.output == {"r": {"greeted": True, "n": 1}}
    call = counter.calls[0]
    assert call.effect.type == "greet_hook_test" and call.effect.payload == {"who": "Ada"}
    assert call.run.session_id == "s" and call.node_id == "g" and call.default_next_node == "end"
    assert call.now_iso().endswith("+00:00")


def test_register_effect_handlers_rejects_a_wrong_descriptor_type():
    from abstractruntime.plugins import PluginError

    class Broken:
        __name__ = "broken_plugin"

        @hookimpl
        def abstractruntime_register_effect_handlers(self):
            return [("greet", lambda call: None)]

    with pytest.raises(PluginError, match="broken_plugin"):
        runtime_on(plugins=[Broken()])


class StorePlugin:
    __name__ = "teststore_plugin"

    def __init__(self) -> None:
        self.locations = []
        self.backends = []

    def _open(self, location: StoreLocation):
        self.locations.append(location)
        backend = MemoryBackend()
        self.backends.append(backend)
        return backend

    @hookimpl
    def abstractruntime_register_stores(self):
        return [StoreDescriptor(name="teststore", factory=self._open, description="test")]


def test_register_stores_provides_a_store_selected_by_url():
    plugin = StorePlugin()
    rt = Runtime.from_config({"store": "teststore://x?opt=1"}, plugins=[plugin])
    assert len(plugin.locations) == 1
    loc = plugin.locations[0]
    assert loc.scheme == "teststore" and loc.path == "x" and loc.options == {"opt": "1"}
    backend = plugin.backends[0]
    assert rt.run_store is backend.run_store and rt.ledger_store is backend.ledger_store
    wf = workflow({"a": lambda run, ctx: StepPlan(node_id="a", complete_output={"ok": 1})})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    assert backend.run_store.load(run_id).status is RunStatus.COMPLETED
    assert len(backend.ledger_store.list(run_id)) == 2


def test_a_registered_store_is_unknown_to_a_runtime_without_the_plugin():
    from abstractruntime import UnknownStoreError

    with pytest.raises(UnknownStoreError):
        Runtime.from_config({"store": "teststore://x"})


class FailingObserver:
    __name__ = "failing_observer"

    @hookimpl
    def abstractruntime_before_step(self, run, node_id):
        raise RuntimeError("observer bug")


def test_observer_that_raises_is_logged_not_raised():
    rt = runtime_on(plugins=[FailingObserver()])
    wf = three_node_workflow()
    run_id = rt.start(workflow=wf)
    with capture_logs() as logs:
        state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.COMPLETED
    failures = [e for e in logs if e.get("event") == "observer_hook_failed"]
    assert len(failures) == 3
    assert failures[0]["hook"] == "abstractruntime_before_step"
    assert "observer bug" in failures[0]["error"]


def test_an_observer_that_raises_does_not_keep_the_others_from_running():
    rec = Recorder()
    rt = runtime_on(plugins=[rec, FailingObserver()])  # pluggy order: the failing one is called first
    wf = three_node_workflow()
    with capture_logs() as logs:
        rt.tick(workflow=wf, run_id=rt.start(workflow=wf))
    assert [kw["node_id"] for kw in rec.of("before_step")] == ["a", "b", "c"]
    failure = next(e for e in logs if e.get("event") == "observer_hook_failed")
    assert failure["plugin"] == "failing_observer"


def test_an_observer_registered_after_the_first_step_is_called_and_an_unregistered_one_is_not():
    """Observer calls are cached per step; registering or unregistering a plugin renews the cache."""
    first, late = Recorder(), Recorder()
    rt = runtime_on(plugins=[first])
    wf = three_node_workflow()
    rt.tick(workflow=wf, run_id=rt.start(workflow=wf), max_steps=1)
    pm = rt.hooks.plugin_manager
    pm.register(late, name="late")
    pm.unregister(first)
    rt.tick(workflow=wf, run_id=rt.start(workflow=wf), max_steps=1)
    assert len(first.of("before_step")) == 1 and len(late.of("before_step")) == 1


class _WrappingObserver:
    __name__ = "wrapping"

    def __init__(self):
        self.seen = []

    @hookimpl(wrapper=True)
    def abstractruntime_after_step(self, node_id):
        self.seen.append(node_id)
        return (yield)


def test_an_observer_hook_with_a_wrapper_is_still_called_through_pluggy():
    wrapper, rec = _WrappingObserver(), Recorder()
    rt = runtime_on(plugins=[wrapper, rec])
    wf = three_node_workflow()
    rt.tick(workflow=wf, run_id=rt.start(workflow=wf))
    assert wrapper.seen == ["a", "b", "c"]
    assert [kw["node_id"] for kw in rec.of("after_step")] == ["a", "b", "c"]


def test_observer_that_raises_is_raised_in_strict_mode():
    rt = runtime_on(plugins=[FailingObserver()], settings={"plugins": {"strict": True}})
    wf = three_node_workflow()
    run_id = rt.start(workflow=wf)
    with pytest.raises(RuntimeError, match="observer bug"):
        rt.tick(workflow=wf, run_id=run_id)
    # before_step runs before anything is executed: nothing was written
    assert rt.get_state(run_id).current_node == "a"
    assert rt.get_ledger(run_id) == []


class _Reshaper:
    __name__ = "reshaper"

    def __init__(self):
        self.seen = []

    @hookimpl
    def abstractruntime_prepare_resume_payload(self, run, wait, payload):
        self.seen.append((run.run_id, wait.reason.value, dict(payload)))
        if payload.get("shout"):
            return {"text": payload["text"].upper()}
        return None


def test_prepare_resume_payload_can_replace_the_payload_before_it_is_stored():
    plugin = _Reshaper()
    rt = runtime_on(plugins=[plugin])
    wf = workflow({
        "ask": effect_node("ask", Effect(EffectType.ASK_USER, {"prompt": "?"}, "answer"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"answer": run.vars["answer"]}),
    }, entry="ask")
    for shout, expected in ((True, {"text": "HI"}), (False, {"text": "hi", "shout": False})):
        run_id = rt.start(workflow=wf)
        state = rt.tick(workflow=wf, run_id=run_id)
        state = rt.resume(workflow=wf, run_id=run_id, wait_key=state.waiting.wait_key,
                          payload={"text": "hi", "shout": shout})
        assert state.output == {"answer": expected}
        resume_row = [r for r in rt.get_ledger(run_id) if (r["effect"] or {}).get("type") == "resume"][0]
        assert resume_row["effect"]["payload"]["payload"] == expected
    assert plugin.seen[0][1] == "user"


def test_run_status_changed_reports_waiting_when_a_due_timer_wakes_the_run():
    from datetime import datetime, timedelta, timezone

    rec = Recorder()
    rt = runtime_on(plugins=[rec], settings={"durability": "step"})  # every transition is a commit
    soon = (datetime.now(timezone.utc) + timedelta(milliseconds=200)).isoformat()
    wf = workflow({
        "w": effect_node("w", Effect(EffectType.WAIT_UNTIL, {"until": soon}), next_node="x"),
        "x": lambda run, ctx: StepPlan(node_id="x", next_node="y"),
        "y": lambda run, ctx: StepPlan(node_id="y", complete_output={}),
    }, entry="w")
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    import time

    time.sleep(0.25)
    rt.tick(workflow=wf, run_id=run_id)
    transitions = [(c["previous_status"].value, c["status"].value) for c in rec.of("run_status_changed")]
    assert transitions == [("running", "waiting"), ("waiting", "running"), ("running", "completed")]


def test_register_runtime_methods_adds_methods_to_the_runtime():
    from abstractruntime.descriptors import RuntimeMethodDescriptor
    from abstractruntime.errors import DuplicateProviderError

    class Methods:
        __name__ = "methods"

        @hookimpl
        def abstractruntime_register_runtime_methods(self):
            return [RuntimeMethodDescriptor("count_steps", lambda rt, run_id: len(rt.get_ledger(run_id)))]

    rt = runtime_on(plugins=[Methods()])
    wf = three_node_workflow()
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    assert rt.count_steps(run_id) == len(rt.get_ledger(run_id)) > 0
    with pytest.raises(AttributeError, match="plugin that provides it"):
        rt.no_such_method()

    class Shadow:
        __name__ = "shadow"

        @hookimpl
        def abstractruntime_register_runtime_methods(self):
            return [RuntimeMethodDescriptor("tick", lambda rt: None)]

    with pytest.raises(DuplicateProviderError, match="tick"):
        runtime_on(plugins=[Shadow()])


def test_register_cli_commands_is_collected_with_its_provider():
    from abstractruntime.descriptors import CliCommandDescriptor

    class Cli:
        __name__ = "cli_plugin"

        @hookimpl
        def abstractruntime_register_cli_commands(self):
            return [CliCommandDescriptor("hello", "say hello", lambda parser: None, lambda args, rt: 0)]

    rt = runtime_on(plugins=[Cli()])
    commands = {d.name: (provider, d) for provider, d in rt.hooks.cli_commands()}
    assert commands["hello"][0] == "cli_plugin" and commands["hello"][1].run(None, rt) == 0


def test_prepare_ledger_records_sees_records_in_order_and_can_set_fields():
    class Stamper:
        __name__ = "stamper"

        def __init__(self):
            self.batches = []

        @hookimpl
        def abstractruntime_prepare_ledger_records(self, runtime, run_id, records):
            self.batches.append((run_id, [r.status.value for r in records]))
            for r in records:
                r.signature = f"sig-{r.step_id}"

    stamper = Stamper()
    rt = runtime_on(plugins=[stamper])
    wf = three_node_workflow()
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    rows = rt.get_ledger(run_id)
    assert rows and all(r["signature"] == f"sig-{r['step_id']}" for r in rows)
    assert [s for _rid, batch in stamper.batches for s in batch] == [r["status"] for r in rows]
    assert all(rid == run_id for rid, _ in stamper.batches)


def test_prepare_ledger_records_raising_aborts_the_commit():
    class Refuser:
        __name__ = "refuser"

        @hookimpl
        def abstractruntime_prepare_ledger_records(self, runtime, run_id, records):
            raise RuntimeError("signing key unavailable")

    rt = runtime_on(plugins=[Refuser()])
    wf = three_node_workflow()
    run_id = rt.start(workflow=wf)
    before = rt.get_state(run_id)
    with pytest.raises(RuntimeError, match="signing key unavailable"):
        rt.tick(workflow=wf, run_id=run_id)
    assert rt.get_ledger(run_id) == []
    assert rt.get_state(run_id).revision <= before.revision + 1  # at most the pure transition a -> b


@pytest.mark.parametrize("bad", [{1, 2}, b"bytes", datetime(2026, 1, 1), 2 ** 70])
def test_a_hook_that_puts_a_value_that_is_not_json_into_a_staged_record_fails_the_commit(bad):
    """Staged records are checked when staged and written in orjson's strict mode: a non-JSON value a hook puts into
    one afterwards (in place, into the copy the kernel checked) is still refused, naming its path; nothing is
    written."""
    from abstractruntime.errors import JsonInvariantError

    class Spoiler:
        __name__ = "spoiler"

        @hookimpl
        def abstractruntime_prepare_ledger_records(self, runtime, run_id, records):
            for r in records:
                if r.result and r.result.get("completed"):
                    r.result["extra"] = bad

    rt = runtime_on(plugins=[Spoiler()])
    wf = three_node_workflow()
    run_id = rt.start(workflow=wf)
    before = rt.get_state(run_id)
    with pytest.raises(JsonInvariantError, match=r"ledger\.result\.extra"):
        rt.tick(workflow=wf, run_id=run_id)
    assert rt.get_ledger(run_id) == []
    assert rt.get_state(run_id).revision == before.revision


def test_poll_wait_lets_a_plugin_resume_a_waiting_run_on_tick():
    class JobDone:
        __name__ = "jobs"

        def __init__(self):
            self.ready = False

        @hookimpl
        def abstractruntime_poll_wait(self, runtime, run):
            if run.waiting.wait_key == "job:1" and self.ready:
                return {"job": "done"}
            return None

    from abstractruntime import EffectOutcome, WaitReason, WaitState

    jobs = JobDone()
    rt = runtime_on(plugins=[jobs], effect_handlers={
        "submit_job": lambda run, effect, nxt: EffectOutcome.waiting(
            WaitState(reason=WaitReason.JOB, wait_key="job:1", resume_to_node=nxt, result_key="job"))})
    wf = workflow({
        "a": effect_node("a", Effect("submit_job", {}), next_node="b"),
        "b": lambda run, ctx: StepPlan(node_id="b", complete_output={"job": run.vars["job"]}),
    }, entry="a")
    run_id = rt.start(workflow=wf)
    assert rt.tick(workflow=wf, run_id=run_id).status.value == "waiting"
    assert rt.tick(workflow=wf, run_id=run_id).status.value == "waiting"  # not ready: unchanged
    jobs.ready = True
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status.value == "completed" and state.output == {"job": {"job": "done"}}
    assert any((r["effect"] or {}).get("type") == "resume" for r in rt.get_ledger(run_id))


def test_fault_point_fires_at_each_durability_boundary_in_order():
    class Points:
        __name__ = "points"

        def __init__(self):
            self.seen = []

        @hookimpl
        def abstractruntime_fault_point(self, point, run_id):
            self.seen.append(point)

    from abstractruntime import EffectHandlerDescriptor, EffectOutcome

    class Charge:
        __name__ = "charge"

        @hookimpl
        def abstractruntime_register_effect_handlers(self):
            return [EffectHandlerDescriptor("charge", lambda call: EffectOutcome.completed({"ok": True}),
                                            side_effects=True)]

    points = Points()
    wf = workflow({
        "a": effect_node("a", Effect("charge", {}), next_node="b"),
        "b": lambda run, ctx: StepPlan(node_id="b", complete_output={}),
    }, entry="a")
    for durability, steps in (("step", ["commit:before", "commit:after",      # the step
                                        "commit:before", "commit:after"]),    # the completing node
                              ("barrier", ["commit:before", "commit:after"])):  # both, at the end of the tick
        rt = runtime_on(plugins=[points, Charge()], settings={"durability": durability})
        run_id = rt.start(workflow=wf)
        points.seen.clear()
        rt.tick(workflow=wf, run_id=run_id)
        assert points.seen == ["commit:before", "commit:after",  # the reservation
                               "effect:after-execute"] + steps


def test_a_fault_before_commit_leaves_the_last_checkpoint_and_ledger_untouched():
    class Crash:
        __name__ = "crash"

        @hookimpl
        def abstractruntime_fault_point(self, point, run_id):
            if point == "commit:before":
                raise RuntimeError("injected")

    backend = MemoryBackend()
    rt = runtime_on(backend, plugins=[Crash()])
    wf = three_node_workflow()
    with pytest.raises(RuntimeError, match="injected"):
        rt.start(workflow=wf)
    assert backend.run_store.list_runs() == []  # nothing was written


class ApiCalls:
    __name__ = "api_calls"

    def __init__(self) -> None:
        self.seen = []

    @hookimpl(wrapper=True)
    def abstractruntime_api_call(self, runtime, name, run_id):
        self.seen.append(("enter", name, run_id))
        try:
            result = yield
        except Exception as exc:
            self.seen.append(("raised", name, type(exc).__name__))
            raise
        self.seen.append(("exit", name, getattr(result, "status", result)))
        return result


def test_api_call_wraps_every_public_call_with_its_run_and_result():
    calls = ApiCalls()
    rt = runtime_on(plugins=[calls])
    wf = workflow({
        "ask": effect_node("ask", Effect(EffectType.ASK_USER, {"prompt": "?"}, "a"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={}),
    })
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    rt.pause_run(run_id)
    rt.resume_run(run_id)
    rt.resume(workflow=wf, run_id=run_id, wait_key=state.waiting.wait_key, payload={})
    other = rt.start(workflow=wf)
    rt.cancel_run(other)
    with pytest.raises(RunNotWaitingError):
        rt.resume(workflow=wf, run_id=other, wait_key=None, payload={})
    assert calls.seen == [
        ("enter", "start", run_id), ("exit", "start", run_id),
        ("enter", "tick", run_id), ("exit", "tick", RunStatus.WAITING),
        ("enter", "pause_run", run_id), ("exit", "pause_run", RunStatus.WAITING),
        ("enter", "resume_run", run_id), ("exit", "resume_run", RunStatus.WAITING),
        ("enter", "resume", run_id), ("exit", "resume", RunStatus.COMPLETED),
        ("enter", "start", other), ("exit", "start", other),
        ("enter", "cancel_run", other), ("exit", "cancel_run", RunStatus.CANCELLED),
        ("enter", "resume", other), ("raised", "resume", "RunNotWaitingError"),
    ]


def test_an_api_call_wrapper_whose_active_says_no_is_passed_by_and_called_again_when_it_says_yes():
    """``active`` on an implementation: while it returns False the kernel calls the API directly (what keeps an
    idle telemetry plugin from costing a pluggy dispatch per call); it is asked at every call."""
    calls = ApiCalls()
    switch = {"on": False}

    class Gated(ApiCalls):
        __name__ = "gated"

        @hookimpl(wrapper=True)
        def abstractruntime_api_call(self, runtime, name, run_id):
            return (yield from ApiCalls.abstractruntime_api_call(self, runtime, name, run_id))

        abstractruntime_api_call.active = lambda **kwargs: switch["on"]

    gated = Gated()
    rt = runtime_on(plugins=[gated])
    wf = workflow({"done": lambda run, ctx: StepPlan(node_id="done", complete_output={})})
    first = rt.start(workflow=wf)
    assert gated.seen == [] and rt.tick(workflow=wf, run_id=first).status is RunStatus.COMPLETED
    switch["on"] = True
    second = rt.start(workflow=wf)
    assert gated.seen == [("enter", "start", second), ("exit", "start", second)]
    rt.hooks.plugin_manager.register(calls, name="api_calls")  # an ungated one: every call goes through pluggy again
    switch["on"] = False
    third = rt.start(workflow=wf)
    assert calls.seen == [("enter", "start", third), ("exit", "start", third)]
    assert gated.seen[-1] == ("exit", "start", third)  # its own wrapper decides what to do then


def test_a_work_hook_wrapper_that_is_not_active_is_passed_by_and_the_others_run_as_pluggy_would():
    """``active`` on a work hook's wrapper (here prepare_ledger_records and execute_effect): while it says no, the
    kernel calls the other implementations itself -- same order, same results, exceptions raised -- and asks the
    gate again at the next call, with the hook's arguments."""
    seen, asked, switch = [], [], {"on": False}

    def plain(name, **opts):
        @hookimpl(**opts)
        def abstractruntime_prepare_ledger_records(runtime, run_id, records):
            seen.append((name, len(records)))
        return type(name, (), {"__name__": name, "abstractruntime_prepare_ledger_records":
                               staticmethod(abstractruntime_prepare_ledger_records)})()

    class Gated:
        __name__ = "gated"

        @hookimpl(wrapper=True)
        def abstractruntime_prepare_ledger_records(self, records):
            seen.append(("wrapper", len(records)))
            return (yield)

        @hookimpl(wrapper=True)
        def abstractruntime_execute_effect(self, call):
            seen.append(("effect wrapper", call.effect.type_value))
            return (yield)

        abstractruntime_prepare_ledger_records.active = lambda records, **_: asked.append(len(records)) or switch["on"]
        abstractruntime_execute_effect.active = lambda call, **_: switch["on"]

    rt = runtime_on(plugins=[plain("late"), plain("first", tryfirst=True), Gated()])
    wf = three_node_workflow()
    run_id = rt.start(workflow=wf)
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.COMPLETED
    off = list(seen)
    assert off and all(name in ("first", "late") for name, _n in off)
    assert asked == [n for name, n in off if name == "first"]  # asked once per call, with the call's records
    assert [name for name, _n in off] == ["first", "late"] * (len(off) // 2)  # pluggy's order: tryfirst first
    rows = rt.get_ledger(run_id)
    seen.clear()
    switch["on"] = True
    other = rt.start(workflow=wf)
    assert rt.tick(workflow=wf, run_id=other).status is RunStatus.COMPLETED
    assert [name for name, _n in seen if name in ("first", "late")] == [name for name, _n in off]
    assert ("wrapper", off[0][1]) in seen and any(name == "effect wrapper" for name, _n in seen)
    assert [r["status"] for r in rt.get_ledger(other)] == [r["status"] for r in rows]
