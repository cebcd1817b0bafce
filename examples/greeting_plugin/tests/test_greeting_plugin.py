"""The example plugin's own tests: it is found through its entry point, with no registration code."""

from abstractruntime import Effect, Runtime, RunStatus, StepPlan, WorkflowSpec


def _greet(run, ctx):
    return StepPlan(
        node_id="greet",
        effect=Effect(type="greet", payload={"name": run.vars["name"], "language": run.vars.get("lang", "en")},
                      result_key="greeting"),
        next_node="done",
    )


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"text": run.vars["greeting"]["text"]})


FLOW = WorkflowSpec(workflow_id="greeting_flow", entry_node="greet", nodes={"greet": _greet, "done": _done})


def test_plugin_is_discovered_through_its_entry_point():
    rt = Runtime.from_config({"store": "memory://"})
    info = {p.name: p for p in rt.plugins()}["greeting"]
    assert info.distribution == "abstractruntime-greeting"
    assert info.version == "1.0.0"
    assert info.status == "loaded" and info.builtin is False
    assert rt.effect_handler_types()["greet"] == "greeting"


def test_a_workflow_uses_the_greet_effect(tmp_path):
    with Runtime.from_config({"store": f"lmdb://{tmp_path}/store"}) as rt:
        run_id = rt.start(workflow=FLOW, vars={"name": "Ada", "lang": "fr"})
        state = rt.tick(workflow=FLOW, run_id=run_id)
        assert state.status is RunStatus.COMPLETED
        assert state.output == {"text": "Bonjour, Ada!"}
        effects = [r["effect"]["type"] for r in rt.get_ledger(run_id) if r["effect"]]
        assert effects[:2] == ["greet", "greet"]  # started + completed


def test_bad_input_fails_the_run_with_a_clear_error():
    rt = Runtime.from_config({"store": "memory://"})
    run_id = rt.start(workflow=FLOW, vars={"name": "Ada", "lang": "xx"})
    state = rt.tick(workflow=FLOW, run_id=run_id)
    assert state.status is RunStatus.FAILED
    assert "unsupported language 'xx'" in state.error


def test_blocking_the_plugin_by_configuration_removes_the_effect():
    rt = Runtime.from_config({"store": "memory://", "plugins": {"block": ["greeting"]}})
    assert "greet" not in rt.effect_handler_types()
    run_id = rt.start(workflow=FLOW, vars={"name": "Ada"})
    state = rt.tick(workflow=FLOW, run_id=run_id)
    assert state.status is RunStatus.FAILED
    assert "No effect handler registered for greet" in state.error
