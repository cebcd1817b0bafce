"""A small OpenAI-compatible HTTP server on 127.0.0.1 with scripted replies (test fixture, no network).

It answers ``GET /v1/models`` and ``POST /v1/chat/completions`` (non-streaming) the way an OpenAI-compatible
server does, so AbstractCore's real ``openai-compatible`` provider (``base_url=server.base_url``) and our remote
client can be pointed at it. Each chat request takes the next scripted reply:

* ``{"content": "text"}`` -- a plain assistant message;
* ``{"tool_calls": [{"name": "add", "arguments": {"a": 1}, "id": "call_1"}]}`` -- native tool calls;
* ``{"json": {...}}`` -- structured output (the object serialised as the message content);
* ``{"error": 500, "message": "boom"}`` -- an HTTP error with an OpenAI-style error body;
* any of the above with ``"delay": seconds`` -- a slow reply; with ``"headers": {...}`` -- extra response headers;
* ``{"body": {...}}`` -- that JSON body verbatim (e.g. one without ``choices``);
* a callable ``fn(request_body) -> reply``.

``POST /v1/embeddings`` answers deterministic vectors ``[len(text), index, 1.0]`` (no script needed).

``usage`` is computed from the text sizes unless the reply gives one. Every request is recorded in
``server.requests`` as ``{"path", "headers", "body"}``. An empty script answers 500 ``script exhausted``.

Run as a script (``python fake_llm_server.py --script replies.json``) it prints its base URL and serves until
killed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Union

#: a model AbstractCore knows to support native (and parallel) tool calls; the fake server answers for any name
MODEL = "llama-3.1-8b-instruct"

Reply = Union[Dict[str, Any], Callable[[Dict[str, Any]], Dict[str, Any]]]


class FakeLLMServer:
    def __init__(self, script: Optional[List[Reply]] = None, *, model: str = "fake-model",
                 models: Optional[List[str]] = None) -> None:
        self.model = model
        self.models = list(models or [model])
        self._script: Deque[Reply] = deque(script or [])
        self.requests: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> "FakeLLMServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: Dict[str, Any], headers: Optional[Dict[str, str]] = None) -> None:
                data = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "owned_by": "fake"} for m in server.models]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, {"error": {"message": "invalid JSON"}})
                    return
                with server._lock:
                    server.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in
                                                                           self.headers.items()}, "body": body})
                if self.path.rstrip("/").endswith("/embeddings"):
                    inputs = body.get("input")
                    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
                    self._send(200, {"object": "list", "model": body.get("model"), "data": [
                        {"object": "embedding", "index": i, "embedding": [float(len(t)), float(i), 1.0]}
                        for i, t in enumerate(inputs)], "usage": {"prompt_tokens": len(inputs),
                                                                  "total_tokens": len(inputs)}})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server._lock:
                    reply = server._script.popleft() if server._script else None
                if callable(reply):
                    reply = reply(body)
                if reply is None:
                    self._send(500, {"error": {"message": "script exhausted", "type": "server_error"}})
                    return
                delay = float(reply.get("delay") or 0)
                if delay:
                    time.sleep(delay)
                if "error" in reply:
                    self._send(int(reply["error"]), {"error": {"message": reply.get("message", "error"),
                                                               "type": "server_error"}})
                    return
                self._send(200, reply["body"] if "body" in reply else server.completion(body, reply),
                           reply.get("headers"))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeLLMServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- script ----------------------------------------------------------------------------------------------
    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def chat_requests(self) -> List[Dict[str, Any]]:
        return [r for r in self.requests if r["path"].rstrip("/").endswith("/chat/completions")]

    # --- replies ---------------------------------------------------------------------------------------------
    def completion(self, body: Dict[str, Any], reply: Dict[str, Any]) -> Dict[str, Any]:
        message: Dict[str, Any] = {"role": "assistant", "content": None}
        finish = reply.get("finish_reason")
        if "tool_calls" in reply:
            calls = []
            for i, call in enumerate(reply["tool_calls"], start=1):
                args = call.get("arguments", {})
                calls.append({"id": call.get("id") or f"call_{i}", "type": "function",
                              "function": {"name": call["name"],
                                           "arguments": args if isinstance(args, str) else json.dumps(args)}})
            message["tool_calls"] = calls
            message["content"] = reply.get("content")
            finish = finish or "tool_calls"
        elif "json" in reply:
            message["content"] = json.dumps(reply["json"])
        else:
            message["content"] = reply.get("content", "")
        prompt_chars = len(json.dumps(body.get("messages") or []))
        completion_chars = len(json.dumps(message))
        usage = reply.get("usage") or {
            "prompt_tokens": max(1, prompt_chars // 4),
            "completion_tokens": max(1, completion_chars // 4),
        }
        usage.setdefault("total_tokens", usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish or "stop"}],
            "usage": usage,
        }


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", help="JSON file with a list of replies")
    parser.add_argument("--model", default="fake-model")
    args = parser.parse_args(argv)
    script = json.loads(open(args.script, encoding="utf-8").read()) if args.script else []
    server = FakeLLMServer(script, model=args.model).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
