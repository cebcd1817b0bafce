"""The ASGI application: server-rendered pages (Jinja2, autoescaped), their polled fragments, the actions and the
JSON API under ``/api``. See docs/console.md."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional
from urllib.parse import parse_qs, urlencode

from abstractruntime.errors import (AbstractRuntimeError, ConfigurationError, InvalidStateError, NotFoundError,
                                    RunNotWaitingError, RunPausedError, ValidationError, WaitKeyMismatchError)
from abstractruntime_pluginkit.jsonload import JsonTooDeepError, loads_bounded

from . import actions, data
from .security import Guard, new_secret

HERE = Path(__file__).resolve().parent
STATIC = {"poll.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
MAX_BODY = 64 * 1024
HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                      "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
_CONFLICT = (InvalidStateError, RunNotWaitingError, RunPausedError, WaitKeyMismatchError)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["jtext"] = _json_text
    env.globals["STATUSES"] = data.STATUSES
    env.globals["urlencode"] = lambda d: urlencode({k: v for k, v in d.items() if v not in (None, "")})
    return env


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, (NotFoundError, KeyError)):
        return 404
    if isinstance(exc, _CONFLICT):
        return 409
    if isinstance(exc, (ValidationError, ValueError)):
        return 400
    return 500


class Console:
    """Holds the runtime, the workflows, the templates and the guard; its methods are the endpoints."""

    def __init__(self, runtime: Any, workflows: Mapping[str, Any], read_only: bool, guard: Guard) -> None:
        self.runtime, self.workflows, self.read_only, self.guard = runtime, workflows, read_only, guard
        self.env = _environment()
        self.counts = data.Counts()
        self.lock = threading.RLock()  # one request at a time uses the runtime

    # --- helpers --------------------------------------------------------------------------------------------
    def _html(self, request: Any, template: str, http_status: int = 200, **context: Any) -> Any:
        from starlette.responses import HTMLResponse

        base = str(request.scope.get("root_path", "")).rstrip("/")
        text = self.env.get_template(template).render(base=base, csrf=self.guard.csrf_token(),
                                                      read_only=self.read_only, **context)
        return HTMLResponse(text, status_code=http_status, headers=HEADERS)

    def _json(self, payload: Any, status: int = 200) -> Any:
        from starlette.responses import Response

        return Response(_json_text(payload), status_code=status, media_type="application/json",
                        headers=HEADERS)

    def _guarded(self, request: Any, fn: Callable[[], Any], *, api: bool, template: str, **ctx: Any) -> Any:
        try:
            with self.lock:
                result = fn()
        except (AbstractRuntimeError, KeyError, ValueError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            status = _status_of(exc)
            if api:
                return self._json({"error": str(message)}, status)
            return self._html(request, "error.html", status, message=str(message), status=status)
        if api:
            return self._json(result)
        return self._html(request, template, **ctx, **{"page": result})

    # --- pages ------------------------------------------------------------------------------------------------
    def runs_page(self, request: Any) -> Any:
        return self._list(request, "runs.html")

    def runs_fragment(self, request: Any) -> Any:
        return self._list(request, "runs_fragment.html")

    def _list(self, request: Any, template: str) -> Any:
        params = request.query_params
        return self._guarded(request, lambda: data.list_page(self.runtime, data.parse_filters(params), self.counts),
                             api=False, template=template, query=str(request.url.query))

    def run_page(self, request: Any) -> Any:
        run_id = request.path_params["run_id"]
        return self._guarded(request, lambda: data.run_detail(self.runtime, run_id, self.workflows), api=False,
                             template="run.html")

    def run_fragment(self, request: Any) -> Any:
        run_id = request.path_params["run_id"]
        return self._guarded(request, lambda: data.run_detail(self.runtime, run_id, self.workflows), api=False,
                             template="run_fragment.html")

    def static(self, request: Any) -> Any:
        from starlette.responses import PlainTextResponse, Response

        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found", status_code=404)
        return Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name],
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"})

    # --- actions ----------------------------------------------------------------------------------------------
    async def action(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import RedirectResponse

        run_id, verb = request.path_params["run_id"], request.path_params["action"]
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return self._html(request, "error.html", 413, message="the form is too large", status=413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if not self.guard.csrf_ok(form.get("csrf")):
            return self._html(request, "error.html", 403, status=403,
                              message="the form's CSRF token is missing or wrong: reload the page and try again")
        if verb not in ("answer", "pause", "resume", "cancel"):
            return self._html(request, "error.html", 404, message=f"no action {verb!r}", status=404)

        def run() -> Any:
            with self.lock:
                if verb == "answer":
                    outcome = actions.answer(self.runtime, run_id, _answer_payload(form), self.workflows)
                elif verb == "pause":
                    outcome = actions.pause(self.runtime, run_id)
                elif verb == "resume":
                    outcome = actions.resume(self.runtime, run_id, self.workflows)
                else:
                    outcome = actions.cancel(self.runtime, run_id)
                self.counts.clear()
                return outcome

        try:
            await run_in_threadpool(run)
        except (AbstractRuntimeError, KeyError, ValueError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            status = _status_of(exc)
            return self._html(request, "error.html", status, message=str(message), status=status, run_id=run_id)
        base = str(request.scope.get("root_path", "")).rstrip("/")
        return RedirectResponse(f"{base}/runs/{_quote(run_id)}", status_code=303)

    # --- JSON API ---------------------------------------------------------------------------------------------
    def api_runs(self, request: Any) -> Any:
        params = request.query_params
        return self._guarded(request, lambda: data.list_page(self.runtime, data.parse_filters(params), self.counts),
                             api=True, template="")

    def api_run(self, request: Any) -> Any:
        run_id = request.path_params["run_id"]

        def get() -> Dict[str, Any]:
            from abstractruntime.codec import run_to_dict

            state = self.runtime.get_state(run_id)
            store = self.runtime.run_store
            children = [c.run_id for c in store.list_children(parent_run_id=run_id)] \
                if data.answers_run_queries(store) else []
            return {"run": run_to_dict(state), "paused": state.is_paused, "waiting": data.waiting_info(state),
                    "children": children}

        return self._guarded(request, get, api=True, template="")

    def api_ledger(self, request: Any) -> Any:
        run_id = request.path_params["run_id"]

        def get() -> Dict[str, Any]:
            self.runtime.get_state(run_id)  # unknown run -> 404
            records, first, total = data.read_ledger(self.runtime, run_id, limit=data.LEDGER_LIMIT)
            return {"run_id": run_id, "total": total, "first_seq": first, "records": records,
                    "timeline": data.ledger_rows(records, first)}

        return self._guarded(request, get, api=True, template="")

    def api_verify(self, request: Any) -> Any:
        run_id = request.path_params["run_id"]

        def get() -> Dict[str, Any]:
            self.runtime.get_state(run_id)
            report = data.verify_report(self.runtime, run_id)
            if report is None:
                raise NotFoundError("this runtime cannot verify ledgers (the provenance plugin is not loaded)")
            return report

        return self._guarded(request, get, api=True, template="")


def _quote(run_id: str) -> str:
    from urllib.parse import quote

    return quote(run_id, safe="")


def _answer_payload(form: Dict[str, str]) -> Dict[str, Any]:
    """``payload`` (a JSON object, for event waits) or ``response`` (text) -> the resume payload."""
    if form.get("payload", "").strip():
        try:
            payload = loads_bounded(form["payload"], what="the payload")
        except JsonTooDeepError:
            raise
        except ValueError as exc:
            raise ValidationError(f"the payload is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise ValidationError('the payload must be a JSON object, e.g. {"approved": true}')
        return payload
    if "response" not in form:
        raise ValidationError("the answer is missing: fill in the response field (or pick a choice)")
    return {"response": form["response"]}


def _workflow_map(workflows: Iterable[Any]) -> Dict[str, Any]:
    if isinstance(workflows, Mapping):
        return dict(workflows)
    out: Dict[str, Any] = {}
    for spec in workflows or ():
        workflow_id = getattr(spec, "workflow_id", None)
        if not isinstance(workflow_id, str):
            raise ValidationError(f"workflows must be WorkflowSpec objects, got {type(spec).__name__}")
        out[workflow_id] = spec
    return out


def app(runtime: Any, workflows: Iterable[Any] = (), read_only: bool = False, token: Optional[str] = None) -> Any:
    """The console as an ASGI application for ``runtime``; mount it in a Starlette/FastAPI app or serve it with
    uvicorn. ``workflows``: WorkflowSpecs the console may resume runs of (besides ``.flow`` runs and the runtime's
    registry). ``read_only``: pages without actions, writes refused (403). ``token``: every request needs it."""
    try:
        from starlette.applications import Starlette
        from starlette.routing import Route
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ConfigurationError("the web console needs its extra: pip install 'abstractruntime[web]'") from exc
    if token is not None and (not isinstance(token, str) or len(token) < 8):
        raise ValidationError("token must be text of at least 8 characters")
    guard = Guard(None, token=token, read_only=read_only, secret=new_secret())
    console = Console(runtime, _workflow_map(workflows), read_only, guard)
    routes = [
        Route("/", console.runs_page), Route("/fragment", console.runs_fragment),
        Route("/runs/{run_id}", console.run_page), Route("/runs/{run_id}/fragment", console.run_fragment),
        Route("/runs/{run_id}/{action}", console.action, methods=["POST"]),
        Route("/static/{name}", console.static),
        Route("/api/runs", console.api_runs), Route("/api/runs/{run_id}", console.api_run),
        Route("/api/runs/{run_id}/ledger", console.api_ledger), Route("/api/runs/{run_id}/verify", console.api_verify),
    ]
    guard.app = Starlette(routes=routes)
    guard.console = console  # type: ignore[attr-defined]
    return guard


__all__ = ["app", "Console"]
