"""The web console's ASGI app through Starlette's TestClient, on real LMDB stores: the list and its filters, the
run page, escaping, CSRF, read-only, the token, the actions, the JSON API, and `abstractruntime serve`'s refusal
to bind a public address without a token."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

pytest.importorskip("starlette")
warnings.filterwarnings("ignore", message=".*httpx.*")
from starlette.testclient import TestClient  # noqa: E402

import abstractruntime_web  # noqa: E402
from web_support import APPROVAL, XSS, completed_run, open_runtime, start_groceries, waiting_run  # noqa: E402


@pytest.fixture
def rt(tmp_path):
    runtime = open_runtime(tmp_path / "store")
    yield runtime
    runtime.close()


def _csrf(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def test_the_list_shows_runs_counts_and_what_waiting_runs_wait_for(rt):
    waiting = waiting_run(rt, prompt="Ship order 42?")
    done = completed_run(rt)
    client = TestClient(abstractruntime_web.app(rt))
    html = client.get("/").text
    assert waiting in html and done in html
    assert "Ship order 42?" in html and "[yes / no]" in html
    api = client.get("/api/runs").json()
    assert api["counts"]["by_status"]["waiting"] == 1 and api["counts"]["by_status"]["completed"] == 1
    assert api["counts"]["total"] == 2
    row = next(r for r in api["runs"] if r["run_id"] == waiting)
    assert row["waiting"]["prompt"] == "Ship order 42?" and row["waiting"]["wait_key"]


def test_filters_and_paging(rt):
    waiting = [waiting_run(rt, prompt=f"question {i}") for i in range(3)]
    done = completed_run(rt)
    client = TestClient(abstractruntime_web.app(rt))
    by_status = client.get("/api/runs?status=completed").json()["runs"]
    assert [r["run_id"] for r in by_status] == [done]
    by_workflow = client.get("/api/runs?workflow=approval").json()["runs"]
    assert sorted(r["run_id"] for r in by_workflow) == sorted(waiting)
    by_text = client.get("/api/runs", params={"q": "question 1"}).json()["runs"]
    assert [r["run_id"] for r in by_text] == [waiting[1]]
    first = client.get("/api/runs?limit=2").json()
    second = client.get(f"/api/runs?limit=2&offset={first['next_offset']}").json()
    assert len(first["runs"]) == 2 and len(second["runs"]) == 2 and second["next_offset"] is None
    assert {r["run_id"] for r in first["runs"] + second["runs"]} == set(waiting + [done])
    html = client.get("/?status=completed").text
    assert done in html and waiting[0] not in html
    bad = client.get("/api/runs?status=sleeping")
    assert bad.status_code == 400 and "status must be one of" in bad.json()["error"]
    assert client.get("/?limit=0").status_code == 400


def test_everything_shown_is_escaped(rt):
    run_id = waiting_run(rt, prompt=XSS, note=XSS, **{XSS: "key"})
    client = TestClient(abstractruntime_web.app(rt))
    for path in ("/", f"/runs/{run_id}", f"/runs/{run_id}/fragment", "/fragment"):
        html = client.get(path).text
        assert "<script>alert" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
    page = client.get(f"/runs/{run_id}")
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_run_page_shows_state_ledger_children_and_verification(rt):
    run_id = waiting_run(rt, prompt="Approve?")
    client = TestClient(abstractruntime_web.app(rt))
    html = client.get(f"/runs/{run_id}").text
    assert 'id="answer-choices"' in html and 'value="yes"' in html and 'id="answer-form"' in html
    assert "ask_user" in html and 'id="verify" class="ok"' in html  # provenance chain verified
    assert client.get("/runs/no-such-run").status_code == 404
    ledger = client.get(f"/api/runs/{run_id}/ledger").json()
    assert ledger["total"] == 2 and [r["effect_type"] for r in ledger["timeline"]] == ["ask_user", "ask_user"]
    assert client.get(f"/api/runs/{run_id}/verify").json()["ok"] is True
    assert client.get("/api/runs/nope").status_code == 404


def test_answering_resumes_a_run_whose_workflow_the_host_passed(rt):
    run_id = waiting_run(rt)
    client = TestClient(abstractruntime_web.app(rt, workflows=[APPROVAL]))
    csrf = _csrf(client.get(f"/runs/{run_id}").text)
    res = client.post(f"/runs/{run_id}/answer", data={"csrf": csrf, "response": "yes"}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == f"/runs/{run_id}"
    state = rt.get_state(run_id)
    assert state.status.value == "completed" and state.output["answer"] == {"response": "yes"}


def test_answering_without_the_workflow_records_it_as_respond_does(rt):
    run_id = waiting_run(rt)
    client = TestClient(abstractruntime_web.app(rt))
    csrf = _csrf(client.get(f"/runs/{run_id}").text)
    assert client.post(f"/runs/{run_id}/answer", data={"csrf": csrf, "response": "no"}).status_code == 200
    state = rt.get_state(run_id)
    assert state.status.value == "running" and state.current_node == "done"
    assert state.vars["answer"] == {"response": "no"}
    again = client.post(f"/runs/{run_id}/answer", data={"csrf": csrf, "response": "no"})
    assert again.status_code == 409 and "not waiting" in again.text


def test_answering_a_groceries_flow_run_completes_it(tmp_path):
    run_id = start_groceries(tmp_path / "store")
    rt = open_runtime(tmp_path / "store")
    try:
        client = TestClient(abstractruntime_web.app(rt))
        html = client.get(f"/runs/{run_id}").text
        assert "What is your name?" in html
        client.post(f"/runs/{run_id}/answer", data={"csrf": _csrf(html), "response": "Ada"})
        state = rt.get_state(run_id)
        assert state.status.value == "completed"
        assert state.output == {"answer": "Hello Ada, your list: TEA, JAM", "lines": ["TEA", "JAM"], "success": True}
    finally:
        rt.close()


def test_pause_resume_cancel(rt):
    run_id = completed_run(rt)
    other = rt.start(workflow=APPROVAL)  # RUNNING, not yet ticked
    client = TestClient(abstractruntime_web.app(rt, workflows=[APPROVAL]))
    csrf = _csrf(client.get(f"/runs/{other}").text)
    client.post(f"/runs/{other}/pause", data={"csrf": csrf})
    assert rt.get_state(other).is_paused
    assert 'id="btn-resume"' in client.get(f"/runs/{other}").text
    client.post(f"/runs/{other}/resume", data={"csrf": csrf})
    state = rt.get_state(other)
    assert not state.is_paused and state.status.value == "waiting"  # resumed and driven to its question
    client.post(f"/runs/{other}/cancel", data={"csrf": csrf})
    assert rt.get_state(other).status.value == "cancelled"
    assert 'id="btn-cancel"' not in client.get(f"/runs/{run_id}").text  # finished runs have no actions


def test_every_post_needs_the_csrf_token_and_a_matching_origin(rt):
    run_id = waiting_run(rt)
    client = TestClient(abstractruntime_web.app(rt))
    csrf = _csrf(client.get(f"/runs/{run_id}").text)
    assert client.post(f"/runs/{run_id}/cancel", data={}).status_code == 403
    assert client.post(f"/runs/{run_id}/cancel", data={"csrf": "0" * 64}).status_code == 403
    evil = client.post(f"/runs/{run_id}/cancel", data={"csrf": csrf}, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and "cross-origin" in evil.text
    assert rt.get_state(run_id).status.value == "waiting"
    ok = client.post(f"/runs/{run_id}/cancel", data={"csrf": csrf}, headers={"Origin": "http://testserver"},
                     follow_redirects=False)
    assert ok.status_code == 303 and rt.get_state(run_id).status.value == "cancelled"
    # another process's console has another secret
    second = waiting_run(rt)
    other = TestClient(abstractruntime_web.app(rt))
    assert _csrf(other.get(f"/runs/{second}").text) != csrf


def test_read_only_shows_no_actions_and_refuses_writes(rt):
    run_id = waiting_run(rt)
    client = TestClient(abstractruntime_web.app(rt, read_only=True))
    html = client.get(f"/runs/{run_id}").text
    assert "<form" not in html.split('id="filters"')[-1] and "read-only" in html
    res = client.post(f"/runs/{run_id}/cancel", data={"csrf": "x"})
    assert res.status_code == 403 and rt.get_state(run_id).status.value == "waiting"


def test_with_a_token_every_request_needs_it(rt):
    waiting_run(rt)
    token = "s3cret-token-value"
    client = TestClient(abstractruntime_web.app(rt, token=token))
    for path in ("/", "/api/runs", "/static/poll.js"):
        assert client.get(path).status_code == 401, path
    assert client.get("/?token=wrong-token-value").status_code == 401
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    first = client.get(f"/?status=waiting&token={token}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/?status=waiting"
    assert "httponly" in first.headers["set-cookie"].lower()
    assert client.get("/api/runs").status_code == 200  # the cookie now
    with pytest.raises(ValueError, match="at least 8"):
        abstractruntime_web.app(rt, token="short")


def test_serve_refuses_a_public_address_without_a_token(tmp_path):
    cmd = [sys.executable, "-m", "abstractruntime_cli", "--store", f"lmdb://{tmp_path}/s", "serve",
           "--host", "0.0.0.0", "--port", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={
        k: v for k, v in __import__("os").environ.items() if k != "ABSTRACTRUNTIME_CONSOLE_TOKEN"})
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing to serve on 0.0.0.0 without a token"), res.stderr


def test_serve_is_a_cli_command(tmp_path):
    res = subprocess.run([sys.executable, "-m", "abstractruntime_cli", "serve", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "--read-only" in res.stdout and "--token" in res.stdout
