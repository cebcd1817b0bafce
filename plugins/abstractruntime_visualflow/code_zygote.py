"""A pool of fork servers for code nodes (POSIX): ``code_runner.py --zygote`` processes that fork one child per
request, so a code node costs a ``fork`` (about a millisecond) instead of an interpreter start-up (20-25 ms).

Each child still runs the user's code alone, in its own session, under the request's limits, from the zygote's
clean state (the zygote never runs user code). A zygote serves one request at a time; the pool starts another when
all are busy (up to :data:`MAX_ZYGOTES`) and a caller waits beyond that. On a time limit the child's process group
is killed; a zygote whose stream may be out of step (a timeout, an answer over the limit, a broken pipe) is
discarded and a fresh one is started for the next request. :func:`run` returns the same dict as a one-shot child
(``stdout``, ``stderr``, ``returncode``, ``timed_out``, ``overflow``), or None when no zygote can be used (the
caller then starts a one-shot child).
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from abstractruntime.errors import AbstractRuntimeError
from abstractruntime.logs import get_logger

log = get_logger("abstractruntime.visualflow")

RUNNER = Path(__file__).resolve().with_name("code_runner.py")
MAX_ZYGOTES = 4
_STDERR_KEEP = 64 * 1024


class _Broken(AbstractRuntimeError):
    """The zygote's stream cannot be trusted any more (discard the zygote)."""


class _Late(AbstractRuntimeError, TimeoutError):
    """The child did not answer in time (or its answer is over the limit): kill it."""


class _Zygote:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", str(RUNNER), "--zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                                     env={k: v for k, v in os.environ.items() if k == "SYSTEMROOT"},
                                     cwd=tempfile.gettempdir(), close_fds=True, start_new_session=True)
        self.out = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self.err = bytearray()
        self.err_lock = threading.Lock()
        threading.Thread(target=self._drain_stderr, daemon=True, name="code-zygote-stderr").start()

    def _drain_stderr(self) -> None:
        stream = self.proc.stderr
        try:
            while True:
                chunk = stream.read(65536) if stream is not None else b""
                if not chunk:
                    return
                with self.err_lock:
                    self.err += chunk
                    del self.err[:-_STDERR_KEEP]
        except (OSError, ValueError):
            return

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        for kill in (lambda: os.killpg(self.proc.pid, signal.SIGKILL), self.proc.kill):
            try:
                kill()
            except (ProcessLookupError, PermissionError, OSError):
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()  # type: ignore[union-attr]
            except (OSError, AttributeError):
                pass

    def _recv(self, n: int, deadline: float) -> bytes:
        data = b""
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.out], [], [], left)[0]:
                raise _Late("no answer in time")
            chunk = os.read(self.out, n - len(data))
            if not chunk:
                raise _Broken("the zygote closed its output")
            data += chunk
        return data

    def run(self, request: bytes, timeout_s: float, cap: int) -> Dict[str, Any]:
        with self.err_lock:
            err_start = len(self.err)
        try:
            view = memoryview(struct.pack(">I", len(request)) + request)
            fd = self.proc.stdin.fileno()  # type: ignore[union-attr]
            while view:
                view = view[os.write(fd, view):]
        except (OSError, ValueError) as exc:
            raise _Broken(f"cannot send the request: {exc}") from None
        deadline = time.monotonic() + timeout_s
        head = self._recv(9, time.monotonic() + 30)  # P + pid: the fork itself
        if head[:1] != b"P":
            raise _Broken("unexpected frame")
        pid = struct.unpack(">q", head[1:])[0]
        answer, timed_out, overflow = b"", False, False
        try:
            tag = self._recv(1, deadline)
            if tag == b"A":
                (size,) = struct.unpack(">I", self._recv(4, deadline))
                if size > cap:
                    overflow = True
                    raise _Late("answer over the output limit")
                answer = self._recv(size, deadline)
                tag = self._recv(1, deadline)
            if tag != b"S":
                raise _Broken("unexpected frame")
            code = struct.unpack(">q", self._recv(8, time.monotonic() + 10))[0]
        except _Late:
            timed_out = not overflow
            for sig_target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    sig_target()
                except (ProcessLookupError, PermissionError):
                    pass
            raise _Done({"stdout": b"", "stderr": self._stderr(err_start), "returncode": -signal.SIGKILL,
                         "timed_out": timed_out, "overflow": overflow}) from None
        return {"stdout": answer, "stderr": self._stderr(err_start), "returncode": code, "timed_out": False,
                "overflow": False}

    def _stderr(self, start: int) -> str:
        with self.err_lock:
            return bytes(self.err[start:])[-2000:].decode("utf-8", "replace")


class _Done(AbstractRuntimeError):
    """A result after which the zygote must be discarded (its stream may hold the rest of a killed child's answer)."""

    def __init__(self, result: Dict[str, Any]) -> None:
        super().__init__("discard")
        self.result = result


class _Pool:
    def __init__(self) -> None:
        self._idle: List[_Zygote] = []
        self._count = 0
        self._cond = threading.Condition()
        self.disabled = os.name != "posix" or not hasattr(os, "fork")

    def _take(self) -> Optional[_Zygote]:
        with self._cond:
            while True:
                while self._idle:
                    z = self._idle.pop()
                    if z.alive:
                        return z
                    self._count -= 1
                    z.close()
                if self._count < MAX_ZYGOTES:
                    self._count += 1
                    break
                self._cond.wait()
        try:
            return _Zygote()
        except OSError as exc:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            log.warning("code_zygote_unavailable", error=str(exc))
            return None

    def _give(self, z: _Zygote, keep: bool) -> None:
        if not keep:
            z.close()
        with self._cond:
            if keep:
                self._idle.append(z)
            else:
                self._count -= 1
            self._cond.notify()

    def run(self, request: bytes, timeout_s: float, cap: int) -> Optional[Dict[str, Any]]:
        if self.disabled:
            return None
        z = self._take()
        if z is None:
            return None
        try:
            result = z.run(request, timeout_s, cap)
        except _Done as done:
            self._give(z, keep=False)
            return done.result
        except (_Broken, _Late, OSError) as exc:
            self._give(z, keep=False)
            log.warning("code_zygote_discarded", error=str(exc) or type(exc).__name__)
            return None
        except BaseException:
            self._give(z, keep=False)
            raise
        self._give(z, keep=True)
        return result

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for z in idle:
            z.close()


POOL = _Pool()
atexit.register(POOL.close)


def run(request: bytes, timeout_s: float, cap: int) -> Optional[Dict[str, Any]]:
    """Run one request in a forked child of a pooled zygote (see the module doc); None: use a one-shot child."""
    return POOL.run(request, timeout_s, cap)


__all__ = ["run", "POOL", "MAX_ZYGOTES"]
