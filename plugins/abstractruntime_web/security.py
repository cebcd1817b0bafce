"""Who may use the console and which requests may change state.

* **Token** (``app(token=...)``, ``serve --token``): every request needs it, as ``Authorization: Bearer <token>`` or
  as the cookie set by opening ``/?token=<token>`` once (the console then redirects to the same URL without it).
  Anything else gets 401.
* **Read-only** (``read_only=True``): every request that is not GET/HEAD gets 403.
* **CSRF**: a state-changing request must come from this console's own page: its ``Origin`` (or ``Referer``), when
  the browser sends one, names the request's ``Host``, and its form carries the per-process CSRF token (checked
  by the action endpoints with :meth:`Guard.csrf_ok`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

COOKIE = "abstractruntime_console_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Guard:
    """The ASGI middleware that applies the token and read-only rules and checks Origin/Host on writes."""

    def __init__(self, app: Any, *, token: Optional[str], read_only: bool, secret: bytes) -> None:
        self.app, self.token, self.read_only, self.secret = app, token, read_only, secret

    # --- CSRF ---------------------------------------------------------------------------------------------------
    def csrf_token(self) -> str:
        return hmac.new(self.secret, b"csrf", hashlib.sha256).hexdigest()

    def csrf_ok(self, value: Optional[str]) -> bool:
        return bool(value) and hmac.compare_digest(str(value), self.csrf_token())

    # --- the middleware -----------------------------------------------------------------------------------------
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse, RedirectResponse

        request = Request(scope)
        if self.token is not None:
            given = request.query_params.get("token")
            if given is not None and request.method in SAFE_METHODS and self._token_ok(given):
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = str(scope.get("root_path", "")) + scope["path"] + (f"?{urlencode(rest)}" if rest else "")
                response = RedirectResponse(target or "/", status_code=303)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict",
                                    path=str(scope.get("root_path") or "/"))
                await response(scope, receive, send)
                return
            if not self._authorized(request):
                await PlainTextResponse("error: this console needs its token: open it once as /?token=TOKEN, or "
                                        "send 'Authorization: Bearer TOKEN'", status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        if request.method not in SAFE_METHODS:
            if self.read_only:
                await PlainTextResponse("error: the console is read-only (started with --read-only)",
                                        status_code=403)(scope, receive, send)
                return
            if not self._same_origin(request):
                await PlainTextResponse("error: cross-origin request refused (its Origin does not match Host)",
                                        status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _token_ok(self, value: str) -> bool:
        return hmac.compare_digest(value.encode("utf-8"), str(self.token).encode("utf-8"))

    def _authorized(self, request: Any) -> bool:
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer " and self._token_ok(header[7:].strip()):
            return True
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and self._token_ok(cookie)

    @staticmethod
    def _same_origin(request: Any) -> bool:
        host = request.headers.get("host", "")
        source = request.headers.get("origin") or request.headers.get("referer")
        if not source:
            return True  # not a browser's cross-site form (browsers send Origin on POST); the CSRF token decides
        if source == "null":
            return False
        return urlsplit(source).netloc.lower() == host.lower()


def new_secret() -> bytes:
    return secrets.token_bytes(32)


__all__ = ["Guard", "COOKIE", "new_secret"]
