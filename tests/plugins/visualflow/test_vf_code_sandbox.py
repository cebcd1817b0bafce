"""``code`` / ``function`` nodes (issue 14, item 2): ordinary Python works under RestrictedPython, escapes stay
blocked (statically and by the run-time guards), and every run has a time, memory and output limit enforced in a
child process, configurable by the host and only lowered by a node."""

from __future__ import annotations

import sys
import time

import pytest

from abstractruntime import RunStatus
from abstractruntime.errors import ConfigurationError
from abstractruntime_visualflow import CodeExecutionError, compile_visualflow
from abstractruntime_visualflow.catalogue.code import UNSANDBOXED_ENV, check_code, eval_expression, run_code
from abstractruntime_visualflow.code_sandbox import CodeLimits, compile_code, run_in_child
from abstractruntime_visualflow.errors import CodeLimitError, CodeRaisedError

from vf_support import E, N, chain, flow, memory_runtime, run

pytest.importorskip("RestrictedPython")

ORDINARY = '''
def transform(input):
    n = 0
    for i in range(10):
        n += i
    total = 0
    while True:
        total += 1
        if total >= 3:
            break
    d = {"a": 1, "b": [1, 2]}
    d["a"] += 5
    d["b"] += [3]
    d.setdefault("c", 0)
    d.update({"e": 1})
    lst = [5, 1, 4]
    lst[0] -= 1
    lst[1:2] += [9]
    lst.append(7)
    lst.sort()
    a, (b, c) = 1, (2, 3)
    first, *rest = [1, 2, 3]
    pairs = [(k, v) for k, v in sorted(d.items()) if k != "b"]
    squares = {x: x * x for x in range(4)}
    evens = set(x for x in range(6) if x % 2 == 0)

    class Counter:
        def __init__(self, start):
            self.value = start

    counter = Counter(2)
    counter.value *= 5

    def gen(k):
        for j in range(k):
            yield j

    try:
        1 / 0
    except ZeroDivisionError as exc:
        caught = str(exc)
    print("n is", n)
    return {
        "n": n, "total": total, "d": d, "lst": lst, "unpacked": [a, b, c, first, rest], "pairs": pairs,
        "squares": squares, "evens": sorted(evens), "counter": counter.value, "gen": list(gen(3)),
        "text": f"{input['name'].upper()}-{n:03d}-{3.14159:.2f}", "caught": caught, "printed": printed,
        "builtins": [len(lst), min(lst), max(lst), sum(lst), abs(-2), round(2.567, 1), int("7"), float("1.5"),
                     str(5), bool(0), isinstance(n, int), list(enumerate("ab")), list(zip("ab", [1, 2])),
                     dict(x=1), list(reversed([1, 2])), any([0, 1]), all([1, 1]), list(map(abs, [-1])),
                     sorted(["b", "a"], key=lambda s: s), math.floor(2.7), " ".join(["a", "b"]),
                     "a,b".split(","), "x".join(["1", "2"]).replace("x", "+")],
    }
'''


def _run_code_node(code, rt=None, **data):
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("c", "code", ins="exec-in", outs="exec-out", code=code, **data),
             N("e", "on_flow_end", ins="exec-in")]
    rt = rt or memory_runtime()
    return run(rt, compile_visualflow(flow("code_flow", nodes, chain("s", "c", "e")), runtime=rt), {"name": "ada"})


def test_ordinary_python_works_in_a_code_node():
    state = _run_code_node(ORDINARY)
    assert state.status is RunStatus.COMPLETED and state.output.get("success", True), state.output
    out = state.output
    assert out["n"] == 45 and out["total"] == 3 and out["counter"] == 10 and out["gen"] == [0, 1, 2]
    assert out["d"] == {"a": 6, "b": [1, 2, 3], "c": 0, "e": 1} and out["lst"] == [1, 4, 4, 7, 9]
    assert out["unpacked"] == [1, 2, 3, 1, [2, 3]] and out["pairs"] == [["a", 6], ["c", 0], ["e", 1]]
    assert out["squares"] == {"0": 0, "1": 1, "2": 4, "3": 9} and out["evens"] == [0, 2, 4]
    assert out["text"] == "ADA-045-3.14" and out["caught"] == "division by zero" and out["printed"] == "n is 45\n"
    assert out["builtins"] == [5, 1, 9, 25, 2, 2.6, 7, 1.5, "5", False, True, [[0, "a"], [1, "b"]],
                               [["a", 1], ["b", 2]], {"x": 1}, [2, 1], True, True, [1], ["a", "b"], 2, "a b",
                               ["a", "b"], "1+2"]


def test_function_node_expressions_and_their_errors():
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("f", "function", ins="exec-in", outs="exec-out",
               expression="[v * 2 for v in input['items']] if x is None else x"),
             N("g", "function", ins="exec-in", outs="exec-out", expression="1 / 0"),
             N("e", "on_flow_end", ins="exec-in a b")]
    edges = chain("s", "f", "g", "e") + [E("f.result", "e.a"), E("g.error", "e.b")]
    state = run(memory_runtime(), compile_visualflow(flow("fn", nodes, edges)), {"items": [1, 2]})
    assert state.output["a"] == [2, 4] and state.output["b"] == "ZeroDivisionError: division by zero"
    assert eval_expression("x + 1", {"x": 1, "_getattr_": "overridden?"}, where="f") == 2


ESCAPES = {
    "dunder": "().__class__.__bases__[0].__subclasses__()",
    "import": "__import__('os').system('true')",
    "open": "open('/etc/hostname').read()",
    "subclasses": "type.__subclasses__(object)",
    "generator_frame": "(x for x in [1]).gi_frame.f_back.f_globals",
    "format_attribute": "'{0.gi_frame.f_back}'.format((x for x in [1]))",
    "format_map": "'{x.gi_code}'.format_map({'x': (y for y in [1])})",
    "getattr": "getattr(input, 'gi_frame')",
    "eval": "eval('1')",
    "globals": "globals()",
    "mro": "list.mro()",
}


@pytest.mark.parametrize("expression", list(ESCAPES.values()), ids=list(ESCAPES))
def test_escapes_are_refused_before_anything_runs(expression):
    with pytest.raises(CodeExecutionError, match="not allowed"):
        check_code(f"def transform(input):\n    return {expression}\n", where="code node 'c'")
    with pytest.raises(CodeExecutionError, match="code node 'c'.*not allowed"):  # the flow does not compile
        _run_code_node(f"def transform(input):\n    return {expression}\n")


@pytest.mark.parametrize("source, error", [
    ("def transform(input):\n    return '{0}'.format(1)", "NotImplementedError: str.format()"),
    ("def transform(input):\n    f = str.format_map\n    return 1", "NotImplementedError: str.format()"),
    ("def transform(input):\n    return list.mro()", 'AttributeError: "mro" is a restricted name'),
    ("def transform(input):\n    s = 'x'\n    s.upper = 1\n    return s", "TypeError: sandboxed code cannot change"),
    ("def transform(input):\n    return input.nothing", "AttributeError: 'dict' object has no attribute"),
])
def test_the_run_time_guards_hold_without_the_static_check(source, error):
    """Defence in depth: code that skipped :func:`check_code` still meets the child's guards."""
    code = compile_code(source, "exec", True, "<guards>")
    with pytest.raises(CodeRaisedError, match=error.replace("(", r"\(").replace(")", r"\)")):
        run_in_child(code=code, restricted=True, kind="function", value={}, limits=CodeLimits(), where="guards")


@pytest.mark.parametrize("source", ["def transform(input):\n    return (x for x in []).gi_frame",
                                    "def transform(input):\n    return input.__class__"])
def test_restrictedpython_refuses_what_the_static_check_would(source):
    with pytest.raises(CodeExecutionError, match="refused by the sandbox"):
        compile_code(source, "exec", True, "<guards>")


# --- limits -------------------------------------------------------------------------------------------------------
def test_an_endless_loop_fails_the_node_at_the_time_limit():
    started = time.monotonic()
    state = _run_code_node("def transform(input):\n    while True:\n        pass\n", timeoutS=0.5)
    assert time.monotonic() - started < 5
    assert state.status is RunStatus.COMPLETED and state.output["success"] is False and state.output["node"] == "c"
    assert "exceeded its time limit of 0.5 s" in state.output["error"]
    assert "code_timeout_s" in state.output["error"] and "timeoutS" in state.output["error"]


def test_the_host_options_set_the_limits_and_a_node_can_only_lower_them():
    rt = memory_runtime(settings={"plugin_options": {"visualflow": {"code_timeout_s": 0.5,
                                                                    "code_max_output_bytes": 1000}}})
    started = time.monotonic()
    state = _run_code_node("def transform(input):\n    while True:\n        pass\n", rt=rt, timeoutS=60)
    assert time.monotonic() - started < 5 and "time limit of 0.5 s" in state.output["error"]
    state = _run_code_node("def transform(input):\n    return {'s': 'a' * 5000}\n", rt=rt)
    assert "output limit of 1000 bytes" in state.output["error"] and "code_max_output_bytes" in state.output["error"]
    assert _run_code_node("def transform(input):\n    return {'s': 'a' * 500}\n", rt=rt).output["s"] == "a" * 500
    state = _run_code_node("def transform(input):\n    return {'s': 'a' * 500}\n", maxOutputBytes=100)
    assert "output limit of 100 bytes" in state.output["error"]
    with pytest.raises(ConfigurationError, match="code_memory_mb"):
        memory_runtime(settings={"plugin_options": {"visualflow": {"code_memory_mb": 8}}})
    with pytest.raises(CodeExecutionError, match="timeoutS must be a positive number"):
        _run_code_node("def transform(input):\n    return 1\n", timeoutS=-1)


@pytest.mark.parametrize("source", ["def transform(input):\n    return len('a' * (2 ** 31))\n",
                                    "def transform(input):\n    return len([i for i in range(10 ** 9)])\n"])
def test_memory_hogs_fail_the_node_at_the_memory_limit(source):
    state = _run_code_node(source, memoryMb=128)
    assert state.output["success"] is False and "exceeded its memory limit of 128 MB" in state.output["error"]
    assert "code_memory_mb" in state.output["error"]


def test_the_limits_hold_for_function_node_expressions():
    with pytest.raises(CodeLimitError, match="time limit") as info:
        eval_expression("sum(i for i in range(10 ** 12))", {}, where="f", limits=CodeLimits(timeout_s=0.5))
    assert info.value.limit == "time"
    with pytest.raises(CodeRaisedError, match="not plain JSON"):
        run_code("def transform(input):\n    return {1, 2}\n", "transform", {}, where="c")


def test_the_opt_in_unsandboxed_mode_still_has_limits_and_the_static_check(monkeypatch):
    monkeypatch.setitem(sys.modules, "RestrictedPython", None)
    monkeypatch.setenv(UNSANDBOXED_ENV, "1")
    assert run_code("def transform(input):\n    n = 0\n    n += input['k']\n    return n\n", "transform",
                    {"k": 2}, where="c") == 2
    with pytest.raises(CodeLimitError, match="time limit"):
        run_code("def transform(input):\n    while True:\n        pass\n", "transform", {}, where="c",
                 limits=CodeLimits(timeout_s=0.5))
    with pytest.raises(CodeExecutionError, match="frame/code attribute '(gi_frame|f_back|f_globals)'"):
        run_code("def transform(input):\n    return (x for x in []).gi_frame.f_back.f_globals\n", "transform", {},
                 where="c")


# --- the fork-server pool (code_zygote) ------------------------------------------------------------------------
def _call(source: str, value=1, **limits):
    code = compile_code(source, "exec", True, "<zygote-test>")
    return run_in_child(code=code, restricted=True, kind="function", limits=CodeLimits(**limits), where="t",
                        value=value)


def test_calls_reuse_a_pooled_zygote_and_each_child_starts_clean():
    from abstractruntime_visualflow import code_zygote

    assert _call("def transform(x):\n    return x + 1\n", 1) == 2
    idle = list(code_zygote.POOL._idle)
    assert idle and all(z.alive for z in idle)
    pids = {z.proc.pid for z in idle}
    # a child's changes die with it: the next call sees nothing of them
    assert _call("seen = []\ndef transform(x):\n    seen.append(x)\n    return len(seen)\n", 5) == 1
    assert _call("seen = []\ndef transform(x):\n    seen.append(x)\n    return len(seen)\n", 6) == 1
    assert {z.proc.pid for z in code_zygote.POOL._idle} & pids  # the same fork server served them


def test_a_timed_out_call_discards_its_zygote_and_the_next_call_works():
    from abstractruntime_visualflow import code_zygote

    _call("def transform(x):\n    return x\n")
    before = {z.proc.pid for z in code_zygote.POOL._idle}
    with pytest.raises(CodeLimitError):
        _call("def transform(x):\n    while True:\n        pass\n", timeout_s=0.3)
    assert _call("def transform(x):\n    return x * 2\n", 21) == 42
    used = before - {z.proc.pid for z in code_zygote.POOL._idle}
    assert used  # the zygote that served the endless loop is gone


def test_concurrent_calls_run_in_several_zygotes_within_the_pool_limit():
    import threading

    from abstractruntime_visualflow import code_zygote

    results, errors = [], []

    def work(i):
        try:
            results.append(_call("def transform(x):\n    return x * x\n", i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and sorted(results) == sorted(i * i for i in range(12))
    assert code_zygote.POOL._count <= code_zygote.MAX_ZYGOTES


def test_without_a_fork_server_each_call_starts_its_own_child(monkeypatch):
    from abstractruntime_visualflow import code_zygote

    monkeypatch.setattr(code_zygote.POOL, "disabled", True)
    assert _call("def transform(x):\n    return x + 1\n", 41) == 42
    with pytest.raises(CodeLimitError):
        _call("def transform(x):\n    while True:\n        pass\n", timeout_s=0.3)
