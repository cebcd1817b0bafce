"""A small Starlette service on AsyncRuntime + AsyncScheduler: runs that wait for a person, answered over HTTP.

    pip install -e ".[web]"            # starlette + uvicorn
    uvicorn --app-dir examples/asgi_service service:app
    curl -s -XPOST localhost:8000/runs -d '{"question": "Ship release 1.2?"}'
    curl -s -XPOST localhost:8000/runs/RUN_ID/answer -d '{"answer": "yes"}'
    curl -s localhost:8000/runs/RUN_ID
    curl -sN localhost:8000/runs/RUN_ID/events      # Server-Sent Events: its ledger rows, until it ends

``POST /runs`` starts a run and drives it to its question (201 with the prompt); ``POST /runs/{id}/answer``
answers it; ``GET /runs/{id}`` shows the state; ``GET /runs/{id}/events`` streams its ledger rows as they are
committed (``AsyncRuntime.watch_ledger``). An answer is final after an undo window (``undo_s``, default 2
seconds, a durable ``WAIT_UNTIL`` timer): the AsyncScheduler, started in the app's lifespan, completes the run when
the timer is due -- after a restart too. Every call is awaited: store I/O and fsyncs run on the AsyncRuntime's
worker threads, never on the event loop (docs/asyncio.md).

The store is ``ABSTRACTRUNTIME_STORE`` (e.g. ``lmdb:///var/lib/approvals``), else the default LMDB store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Dict, Mapping, Optional

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from abstractruntime import AsyncRuntime, Effect, EffectType, RunState, StepPlan, WaitReason, WorkflowSpec
from abstractruntime.errors import UnknownRunError
from abstractruntime_asyncio import AsyncScheduler
from abstractruntime_pluginkit import WorkflowRegistry


# --- the workflow ---------------------------------------------------------------------------------------------------
def ask(run: RunState, ctx: Any) -> StepPlan:
    return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": run.vars["question"]},
                                                 result_key="answer"), next_node="undo_window")


def undo_window(run: RunState, ctx: Any) -> StepPlan:
    until = datetime.now(timezone.utc) + timedelta(seconds=float(run.vars.get("undo_s", 2.0)))
    return StepPlan(node_id="undo_window", effect=Effect(type=EffectType.WAIT_UNTIL,
                                                         payload={"until": until.isoformat()}), next_node="decide")


def decide(run: RunState, ctx: Any) -> StepPlan:
    return StepPlan(node_id="decide", complete_output={"question": run.vars["question"],
                                                       "answer": run.vars["answer"]["answer"]})


APPROVAL = WorkflowSpec(workflow_id="approval", entry_node="ask",
                        nodes={"ask": ask, "undo_window": undo_window, "decide": decide})


# --- the HTTP API ---------------------------------------------------------------------------------------------------
def view(state: RunState) -> Dict[str, Any]:
    out: Dict[str, Any] = {"run_id": state.run_id, "status": state.status.value}
    if state.waiting is not None:
        out["waiting_for"] = state.waiting.reason.value
        if state.waiting.reason is WaitReason.USER:
            out["prompt"] = state.waiting.prompt
        if state.waiting.until:
            out["until"] = state.waiting.until
    if state.output is not None:
        out["output"] = state.output
    if state.error:
        out["error"] = state.error
    return out


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_object(request: Request) -> Optional[Mapping[str, Any]]:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def start_run(request: Request) -> JSONResponse:
    body = await _json_object(request)
    question = body.get("question") if body else None
    undo_s = body.get("undo_s", 2.0) if body else None
    if not isinstance(question, str) or not question.strip():
        return error(400, 'send a JSON object with a non-empty "question" string')
    if not isinstance(undo_s, (int, float)) or isinstance(undo_s, bool) or not 0 <= undo_s <= 86400:
        return error(400, '"undo_s" must be a number of seconds between 0 and 86400')
    rt: AsyncRuntime = request.app.state.rt
    run_id = await rt.start(workflow=APPROVAL, vars={"question": question.strip(), "undo_s": float(undo_s)})
    state = await rt.tick(workflow=APPROVAL, run_id=run_id)  # to the question (a barrier: durable when we answer)
    return JSONResponse(view(state), status_code=201)


async def get_run(request: Request) -> JSONResponse:
    rt: AsyncRuntime = request.app.state.rt
    try:
        state = await rt.get_state(request.path_params["run_id"])
    except UnknownRunError:
        return error(404, f"no run {request.path_params['run_id']}")
    return JSONResponse(view(state))


async def answer_run(request: Request) -> JSONResponse:
    body = await _json_object(request)
    answer = body.get("answer") if body else None
    if not isinstance(answer, str) or not answer.strip():
        return error(400, 'send a JSON object with a non-empty "answer" string')
    rt: AsyncRuntime = request.app.state.rt
    run_id = request.path_params["run_id"]
    try:
        state = await rt.get_state(run_id)
    except UnknownRunError:
        return error(404, f"no run {run_id}")
    if state.waiting is None or state.waiting.reason is not WaitReason.USER:
        return JSONResponse({"error": "this run is not waiting for an answer", **view(state)}, status_code=409)
    state = await rt.resume(workflow=APPROVAL, run_id=run_id, wait_key=state.waiting.wait_key,
                            payload={"answer": answer.strip()})
    return JSONResponse(view(state))


class EventStream(StreamingResponse):
    """A ``StreamingResponse`` that closes its body iterator however the response ends (Starlette leaves an iterator
    whose client went away -- ``send`` raising, ASGI 2.4 -- to the garbage collector): its watch ends with it."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[union-attr]


async def run_events(request: Request) -> Response:
    """Server-Sent Events: each ledger row of the run as it is committed, ``id`` its number (a client that reconnects
    sends ``Last-Event-ID`` and gets the rows after it); the stream ends when the run has ended. A keep-alive comment
    goes out every ``keepalive_s`` seconds without a row: a server learns that a client went away when it sends to
    it, and the watch under the stream (a ledger subscription, a poll) must not outlive the client by the days a run
    may wait."""
    rt: AsyncRuntime = request.app.state.rt
    run_id = request.path_params["run_id"]
    try:
        await rt.get_state(run_id)
    except UnknownRunError:
        return error(404, f"no run {run_id}")
    last = request.headers.get("last-event-id", "").strip()
    rows = rt.watch_ledger(run_id, after=int(last) if last.isdigit() else 0)
    queue: "asyncio.Queue[Any]" = asyncio.Queue()

    async def watch() -> None:
        try:
            async for item in rows:
                queue.put_nowait(item)
        finally:
            queue.put_nowait(None)

    async def events() -> AsyncIterator[str]:
        watcher = asyncio.ensure_future(watch())
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), request.app.state.keepalive_s)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if item is None:
                    await watcher  # the run ended (or the watch failed: raised here)
                    return
                number, row = item
                yield f"id: {number}\nevent: ledger\ndata: {json.dumps(row)}\n\n"
        finally:  # the run ended, or the client went away
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    return EventStream(events(), media_type="text/event-stream")


def create_app(config: Any = None, *, poll_interval_s: float = 0.5, keepalive_s: float = 15.0) -> Starlette:
    """The service; ``config`` is anything ``AsyncRuntime.from_config`` takes (None: the environment)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        registry = WorkflowRegistry()
        registry.register(APPROVAL)
        async with AsyncRuntime.from_config(config, workflow_registry=registry) as rt:
            async with AsyncScheduler(rt, registry, poll_interval_s=poll_interval_s) as scheduler:
                app.state.rt, app.state.scheduler, app.state.keepalive_s = rt, scheduler, keepalive_s
                yield  # serving; at shutdown the scheduler lets the steps in flight finish, then the store closes

    return Starlette(routes=[Route("/runs", start_run, methods=["POST"]),
                             Route("/runs/{run_id}", get_run, methods=["GET"]),
                             Route("/runs/{run_id}/events", run_events, methods=["GET"]),
                             Route("/runs/{run_id}/answer", answer_run, methods=["POST"])],
                     lifespan=lifespan)


app = create_app()  # uvicorn service:app (nothing is opened until the server starts the lifespan)
