"""examples/asgi_service: the Starlette service on AsyncRuntime + AsyncScheduler, driven with httpx's AsyncClient
(ASGITransport; the app's lifespan entered as the server would)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

SERVICE = Path(__file__).resolve().parents[3] / "examples" / "asgi_service" / "service.py"


def _service():
    spec = importlib.util.spec_from_file_location("asgi_service_example", SERVICE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.asynccontextmanager
async def serving(store_url, **options):
    app = _service().create_app({"store": store_url}, poll_interval_s=0.05, **options)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
            client.app = app
            yield client


async def _until_completed(client, run_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = (await client.get(f"/runs/{run_id}")).json()
        if body["status"] != "waiting":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} still waiting: {body}")


def test_start_answer_and_the_scheduler_completes_the_run(tmp_path):
    async def main():
        async with serving(f"lmdb://{tmp_path / 'runs'}") as client:
            created = await client.post("/runs", json={"question": "Ship 1.2?", "undo_s": 0.3})
            assert created.status_code == 201, created.text
            run = created.json()
            assert run["status"] == "waiting" and run["waiting_for"] == "user" and run["prompt"] == "Ship 1.2?"
            assert (await client.get(f"/runs/{run['run_id']}")).json() == run
            answered = await client.post(f"/runs/{run['run_id']}/answer", json={"answer": "yes"})
            assert answered.status_code == 200 and answered.json()["waiting_for"] == "until"
            again = await client.post(f"/runs/{run['run_id']}/answer", json={"answer": "no"})
            assert again.status_code == 409 and again.json()["error"] == "this run is not waiting for an answer"
            return await _until_completed(client, run["run_id"])

    done = asyncio.run(main())
    assert done["status"] == "completed" and done["output"] == {"question": "Ship 1.2?", "answer": "yes"}


def test_sixteen_concurrent_clients(tmp_path):
    async def client_session(client, i):
        run = (await client.post("/runs", json={"question": f"q{i}", "undo_s": 0.1})).json()
        await client.post(f"/runs/{run['run_id']}/answer", json={"answer": f"a{i}"})
        return await _until_completed(client, run["run_id"])

    async def main():
        async with serving(f"lmdb://{tmp_path / 'runs'}") as client:
            return await asyncio.gather(*[client_session(client, i) for i in range(16)])

    results = asyncio.run(main())
    assert sorted(r["output"]["answer"] for r in results) == sorted(f"a{i}" for i in range(16))


def test_a_run_answered_before_a_restart_completes_after_it(tmp_path):
    url = f"lmdb://{tmp_path / 'runs'}"

    async def before():
        async with serving(url) as client:
            run = (await client.post("/runs", json={"question": "Restart?", "undo_s": 0.5})).json()
            await client.post(f"/runs/{run['run_id']}/answer", json={"answer": "fine"})
            return run["run_id"]  # the app shuts down inside the undo window

    async def after(run_id):
        async with serving(url) as client:  # a new process would do the same: the timer is in the store
            return await _until_completed(client, run_id)

    run_id = asyncio.run(before())
    assert asyncio.run(after(run_id))["output"] == {"question": "Restart?", "answer": "fine"}


def _events(text):
    """``[(id, data), ...]`` of a text/event-stream body (comments -- keep-alives -- left out)."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert fields["event"] == "ledger", block
        out.append((int(fields["id"]), json.loads(fields["data"])))
    return out


def test_events_stream_the_ledger_as_it_is_committed_until_the_run_ends(tmp_path):
    async def main():
        async with serving(f"lmdb://{tmp_path / 'runs'}") as client:
            run = (await client.post("/runs", json={"question": "Stream?", "undo_s": 0.2})).json()
            stream = asyncio.ensure_future(client.get(f"/runs/{run['run_id']}/events"))
            await asyncio.sleep(0.1)
            assert not stream.done(), "the stream ended while the run was waiting"
            await client.post(f"/runs/{run['run_id']}/answer", json={"answer": "yes"})
            response = await asyncio.wait_for(stream, 10)  # ends once the scheduler has completed the run
            resumed = await client.get(f"/runs/{run['run_id']}/events", headers={"Last-Event-ID": "2"})
            ledger = await client.app.state.rt.get_ledger(run["run_id"])
            state = (await client.get(f"/runs/{run['run_id']}")).json()
            return response, resumed, ledger, state

    response, resumed, ledger, state = asyncio.run(main())
    assert state["status"] == "completed"
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert events == list(enumerate(ledger, 1))
    assert _events(resumed.text) == events[2:]


@pytest.mark.parametrize("spec", ["2.0", "2.4"])
def test_a_client_that_goes_away_ends_its_stream_and_the_watch_under_it(tmp_path, spec):
    """Raw ASGI, so the client can leave mid-stream -- told by an ``http.disconnect`` message (ASGI 2.0: the server
    cancels the response) or by ``send`` raising ``OSError`` (2.4, as uvicorn does) -- and the run's ledger
    subscription goes with the stream (the run waits on: nothing else changes)."""
    async def main():
        async with serving(f"lmdb://{tmp_path / 'runs'}", keepalive_s=0.05) as client:
            run = (await client.post("/runs", json={"question": "Leave?", "undo_s": 60})).json()
            subscribers = client.app.state.rt.runtime._subscriptions
            before = len(subscribers._subscribers)
            requested, leave, first_event, chunks = [False], asyncio.Event(), asyncio.Event(), []

            async def receive():
                if not requested[0]:
                    requested[0] = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                await leave.wait()
                return {"type": "http.disconnect"}

            async def send(message):
                if spec == "2.4" and leave.is_set():
                    raise OSError("the client went away")
                if message["type"] == "http.response.body" and message.get("body"):
                    chunks.append(message["body"])
                    first_event.set()

            path = f"/runs/{run['run_id']}/events"
            scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": spec}, "http_version": "1.1",
                     "method": "GET",
                     "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
                     "headers": [(b"host", b"service")], "client": ("127.0.0.1", 5000), "server": ("service", 80)}
            response = asyncio.ensure_future(client.app(scope, receive, send))
            await asyncio.wait_for(first_event.wait(), 10)
            during = len(subscribers._subscribers)
            leave.set()  # 2.4: the next keep-alive finds the client gone
            from starlette.requests import ClientDisconnect

            with contextlib.suppress(ClientDisconnect):  # 2.4: how Starlette tells the server the client left
                await asyncio.wait_for(response, 10)
            await asyncio.sleep(0)  # the cancelled watch closes
            state = (await client.get(f"/runs/{run['run_id']}")).json()
            return before, during, len(subscribers._subscribers), chunks, state

    before, during, after, chunks, state = asyncio.run(main())
    assert during == before + 1 and after == before
    assert _events(b"".join(chunks).decode())[0][0] == 1  # (keep-alive comments are not events)
    assert state["status"] == "waiting"


@pytest.mark.parametrize("method,path,body,status,message", [
    ("post", "/runs", {"question": ""}, 400, 'non-empty "question"'),
    ("post", "/runs", ["not", "an", "object"], 400, 'non-empty "question"'),
    ("post", "/runs", {"question": "q", "undo_s": "soon"}, 400, '"undo_s" must be a number'),
    ("get", "/runs/nope", None, 404, "no run nope"),
    ("get", "/runs/nope/events", None, 404, "no run nope"),
    ("post", "/runs/nope/answer", {"answer": "x"}, 404, "no run nope"),
    ("post", "/runs/nope/answer", {}, 400, 'non-empty "answer"'),
])
def test_bad_requests_are_refused_and_change_nothing(tmp_path, method, path, body, status, message):
    async def main():
        async with serving("memory://") as client:
            kwargs = {"json": body} if body is not None else {}
            response = await getattr(client, method)(path, **kwargs)
            store = client.app.state.rt.runtime.run_store
            return response, await asyncio.to_thread(store.list_runs, limit=10)

    response, runs = asyncio.run(main())
    assert response.status_code == status and message in response.json()["error"]
    assert runs == []  # nothing was started
