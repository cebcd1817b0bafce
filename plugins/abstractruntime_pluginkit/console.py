"""Terminal output for command-line commands: colour only where it belongs, progress bars for long operations.

* :func:`color_enabled` -- colour and live views only on a terminal, never with ``NO_COLOR`` (https://no-color.org:
  any non-empty value) or ``TERM=dumb``; a pipe or a file gets plain text.
* :func:`rich_console` -- a ``rich`` console for a stream (``rich`` is imported here, on first use, never when a
  plugin is discovered).
* :func:`progress_display` -- a :class:`Progress` drawing bars on stderr when stderr is a terminal (stdout stays
  parseable, ``--json`` included), else one that draws nothing. Library functions take ``progress=None`` and call
  ``(progress or NO_PROGRESS).stage("reading ledgers", total)`` to get an ``advance(n=1)`` function.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator, Optional, TextIO


def is_terminal(stream: Optional[TextIO] = None) -> bool:
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def color_enabled(stream: Optional[TextIO] = None) -> bool:
    """Colour and redrawing output for ``stream`` (default stdout): a terminal, no ``NO_COLOR``, not ``TERM=dumb``."""
    if os.environ.get("NO_COLOR", ""):
        return False
    if os.environ.get("TERM", "") == "dumb":
        return False
    return is_terminal(stream)


def rich_console(stream: Optional[TextIO] = None, **kwargs: Any) -> Any:
    """A ``rich.console.Console`` writing to ``stream`` (default stdout), colourless unless :func:`color_enabled`
    (a terminal with ``NO_COLOR`` still gets live redrawing, without colour)."""
    from rich.console import Console

    stream = sys.stdout if stream is None else stream
    terminal = is_terminal(stream) and os.environ.get("TERM", "") != "dumb"
    kwargs.setdefault("highlight", False)
    return Console(file=stream, force_terminal=terminal, no_color=not color_enabled(stream),
                   color_system="auto" if color_enabled(stream) else None, **kwargs)


def _nothing(n: int = 1) -> None:
    return None


class Progress:
    """Progress of a long operation, in stages; this one draws nothing (:data:`NO_PROGRESS`)."""

    def stage(self, description: str, total: Optional[int] = None) -> Callable[[int], None]:
        """Start a stage of ``total`` steps (None: unknown); returns ``advance(n=1)``."""
        return _nothing


NO_PROGRESS = Progress()


class _RichProgress(Progress):
    def __init__(self, bar: Any) -> None:
        self._bar = bar
        self._task: Any = None

    def stage(self, description: str, total: Optional[int] = None) -> Callable[[int], None]:
        previous = next((t for t in self._bar.tasks if t.id == self._task), None)
        if previous is not None and previous.total is not None:  # done: shown full, the next stage below it
            self._bar.update(previous.id, completed=previous.total)
        task_id = self._task = self._bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            self._bar.advance(task_id, n)

        return advance


@contextlib.contextmanager
def progress_display(enabled: bool = True, stream: Optional[TextIO] = None) -> Iterator[Progress]:
    """A :class:`Progress` drawing on ``stream`` (default stderr) if ``enabled`` and it is a terminal (not
    ``TERM=dumb``); the bars disappear when the operation ends. Otherwise :data:`NO_PROGRESS`."""
    stream = sys.stderr if stream is None else stream
    if not enabled or not is_terminal(stream) or os.environ.get("TERM", "") == "dumb":
        yield NO_PROGRESS
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Bar(*columns, console=rich_console(stream), transient=True) as bar:
        yield _RichProgress(bar)


__all__ = ["is_terminal", "color_enabled", "rich_console", "Progress", "NO_PROGRESS", "progress_display"]
