"""Benchmark: start-up of the library and of the ``abstractruntime`` command line, in cold processes.

Run: python benchmarks/startup.py [--repeat 10] [--json] [--no-pycache]

Each figure is the median wall time of ``--repeat`` fresh ``python`` processes (issue 23's targets in parentheses):

* ``import abstractruntime`` (<= 60 ms): ``python -c "import abstractruntime"`` minus an empty ``python -c pass``;
* ``abstractruntime --help`` (<= 150 ms) and ``abstractruntime --store memory:// runs list`` (<= 200 ms): the whole
  process, as a person waits for it (``python -m abstractruntime_cli ...``, which is what the console script runs);
* first ``Runtime.from_config({"store": "memory://"})`` after the import (<= 100 ms): timed inside the process with
  ``time.perf_counter`` (plugin discovery, loading and the store), so the interpreter's start is not in it.

Each figure has the wall time (what the targets are about) and the CPU time of the process (user + system): on a
busy machine the wall time grows with the load and the CPU time hardly moves. A process is "cold" for the
interpreter, not for the disk: the files are in the page cache after the first run, as they are for a person typing
commands, and the bytecode is cached (in ``PYCACHE``, as an installed package has its ``.pyc`` files), even when the
calling environment sets ``PYTHONDONTWRITEBYTECODE``; ``--no-pycache`` measures without it (every process compiles
what it imports, as in a checkout run with ``PYTHONDONTWRITEBYTECODE=1``). ``python -X importtime -c "import
abstractruntime"`` shows what costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, Sequence, Tuple

FIRST_RUNTIME = (
    "import time, abstractruntime\n"
    "t0, c0 = time.perf_counter(), time.process_time()\n"
    "rt = abstractruntime.Runtime.from_config({'store': 'memory://'})\n"
    "print((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000)\n"
    "rt.close()\n"
)

TARGETS_MS = {"import abstractruntime": 60, "abstractruntime --help": 150,
              "abstractruntime --store memory:// runs list": 200, "first Runtime.from_config (memory://)": 100}


#: the bytecode cache of the measured processes (an installed package has its .pyc files; without them every import
#: compiles the source, which costs more than the import itself). Outside the source tree, which stays clean.
PYCACHE = os.path.join(tempfile.gettempdir(), "abstractruntime-startup-pycache")


#: ``--no-pycache``: every process compiles the modules of a checkout without ``__pycache__`` (a checkout run with
#: PYTHONDONTWRITEBYTECODE=1, as the figures of issue 23 were measured)
NO_PYCACHE = False


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    for name in ("ABSTRACTRUNTIME_CONFIG", "ABSTRACTRUNTIME_STORE", "PYTHONPROFILEIMPORTTIME",
                 "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    env["NO_COLOR"] = "1"
    if NO_PYCACHE:  # the installed dependencies keep their .pyc files; this checkout's modules are compiled
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env["PYTHONPYCACHEPREFIX"] = PYCACHE
    return env


def _run(argv: Sequence[str]) -> Tuple[float, float]:
    """(wall ms, CPU ms) of one process: the CPU time (user + system, from ``wait4``) hardly moves when other
    processes compete for the cores, the wall time does."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {proc.returncode}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def _median(argv: Sequence[str], repeat: int) -> Tuple[float, float]:
    runs = [_run(argv) for _ in range(repeat)]
    return statistics.median(w for w, _c in runs), statistics.median(c for _w, c in runs)


def _inside(code: str, repeat: int) -> Tuple[float, float]:
    """(wall ms, CPU ms) the code prints as ``wall cpu``, median over ``repeat`` processes."""
    out = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=_env())
        out.append(tuple(float(x) for x in done.stdout.strip().splitlines()[-1].split()))
    return statistics.median(w for w, _c in out), statistics.median(c for _w, c in out)


def measure(repeat: int) -> Dict[str, Tuple[float, float]]:
    """``{figure: (wall ms, CPU ms)}``."""
    py = sys.executable
    _run([py, "-c", "import abstractruntime"])  # warm the page cache and the bytecode cache
    empty = _median([py, "-c", "pass"], repeat)
    imported = _median([py, "-c", "import abstractruntime"], repeat)
    return {
        "python -c pass (subtracted from the import)": empty,
        "import abstractruntime": (imported[0] - empty[0], imported[1] - empty[1]),
        "abstractruntime --help": _median([py, "-m", "abstractruntime_cli", "--help"], repeat),
        "abstractruntime --store memory:// runs list": _median(
            [py, "-m", "abstractruntime_cli", "--store", "memory://", "runs", "list"], repeat),
        "first Runtime.from_config (memory://)": _inside(FIRST_RUNTIME, repeat),
    }


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="cold processes per figure (default 10)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-pycache", action="store_true",
                        help="no bytecode cache: every process compiles what it imports (the issue's conditions)")
    args = parser.parse_args(list(argv) or None)
    global NO_PYCACHE
    NO_PYCACHE = args.no_pycache
    figures = measure(args.repeat)
    if args.json:
        print(json.dumps({k: {"wall_ms": round(w, 1), "cpu_ms": round(c, 1)} for k, (w, c) in figures.items()},
                         indent=2))
        return 0
    print(f"median of {args.repeat} cold processes, Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores" + (", no bytecode cache" if NO_PYCACHE else ""))
    print(f"  {'':<48} {'wall':>9} {'CPU':>9}")
    for name, (wall, cpu) in figures.items():
        target = TARGETS_MS.get(name)
        verdict = "" if target is None else f"  target <= {target} ms: {'ok' if wall <= target else 'MISSED'}"
        print(f"  {name:<48} {wall:6.1f} ms {cpu:6.1f} ms{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
