# SPDX-License-Identifier: MIT
"""Progress lines of long work (image and kernel builds, boots): a callable that takes one line.

Builders take `progress: Progress = stderr_progress`; libraries that should stay quiet unless
asked take `quiet`.

Work that counts (objects compiled, packages set up) reports how far it is: `heartbeat_every()`
says how often (often on a terminal, now and then in a CI log), and `LastTotals` remembers
what the last complete run of the same job counted, so that `how_far` can give a percentage
and an estimate of the time left.

On a terminal the heartbeat is a `Transient` line, a bar that `stderr_progress` redraws in
place; in a log (stderr not a terminal) it stays a plain line every `LOG_INTERVAL`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

Progress = Callable[[str], None]


CLEAR_LINE = "\r\x1b[K"  # back to column 0, erase to the end of the line


class Transient(str):
    """A status line that the next line replaces (a heartbeat). Only `stderr_progress` on a
    terminal treats it differently; any other Progress gets a plain str."""


class _Terminal:
    """What `stderr_progress` left on the terminal; heartbeat threads and the main thread
    share it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status_showing = False  # a Transient is on the last line, without a newline


_terminal = _Terminal()


def stderr_progress(line: str) -> None:
    with _terminal.lock:
        if not sys.stderr.isatty():
            print(line, file=sys.stderr, flush=True)
        elif isinstance(line, Transient):
            # One column short of the width: a line that fills it would wrap on some
            # terminals, and "\r" would then only go back to the start of the wrapped part.
            width = max(shutil.get_terminal_size().columns - 1, 1)
            sys.stderr.write(CLEAR_LINE + line[:width])
            sys.stderr.flush()
            _terminal.status_showing = True
        else:
            prefix = CLEAR_LINE if _terminal.status_showing else ""
            _terminal.status_showing = False
            print(prefix + line, file=sys.stderr, flush=True)


def clear_status() -> None:
    """Erase a status `stderr_progress` left on the terminal, when its heartbeat stops: what
    is printed next (an error, a traceback) must not run on from the bar."""
    with _terminal.lock:
        if _terminal.status_showing:
            sys.stderr.write(CLEAR_LINE)
            sys.stderr.flush()
            _terminal.status_showing = False


def quiet(_line: str) -> None:
    """Says nothing."""


@contextlib.contextmanager
def phase(progress: Progress, label: str, name: str) -> Iterator[None]:
    """Report a step as 'bookworm: mmdebstrap ...', then 'bookworm: mmdebstrap ... 31.2 s'."""
    progress(f"{label}: {name} ...")
    start = time.monotonic()
    yield
    progress(f"{label}: {name} ... {time.monotonic() - start:.1f} s")


TERMINAL_INTERVAL = 5.0  # seconds between progress lines on a terminal
LOG_INTERVAL = 30.0  # and in a log (CI), where every line stays


def heartbeat_every() -> float:
    return TERMINAL_INTERVAL if sys.stderr.isatty() else LOG_INTERVAL


def duration(seconds: float) -> str:
    """'4m05s', or '37s'."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


BAR_CELLS = 20


def how_far(done: int, total: int | None, elapsed: float, unit: str, *, bar: bool = False) -> str:
    """'812 of 1555 objects (52%), about 3m50s left', or '812 objects' without a total (or
    past it: this run does more than the last one did). With `bar` and a total, that text
    follows '[##########..........] '."""
    if not total or done > total:
        return f"{done} {unit}"
    text = f"{done} of {total} {unit} ({100 * done // total}%)"
    if bar:
        cells = BAR_CELLS * done // total
        text = f"[{'#' * cells}{'.' * (BAR_CELLS - cells)}] {text}"
    if done and elapsed > 0:
        text += f", about {duration(elapsed * (total - done) / done)} left"
    return text


def heartbeat_line(
    what: str, done: int, total: int | None, elapsed: float, unit: str, rest: str
) -> str:
    """'what: how_far, rest': on a terminal a Transient with a bar, redrawn in place; in a
    log the plain line, which stays."""
    if sys.stderr.isatty():
        return Transient(f"{what}: {how_far(done, total, elapsed, unit, bar=True)}, {rest}")
    return f"{what}: {how_far(done, total, elapsed, unit)}, {rest}"


class LastTotals:
    """How much the last complete run of each job counted, in a JSON file (one writer at a
    time is not needed: the last complete run wins, and a lost update only loses an estimate)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def get(self, job: str) -> int | None:
        return self._read().get(job)

    def record(self, job: str, total: int) -> None:
        data = self._read()
        data[job] = total
        scratch = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            scratch.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            scratch.replace(self.path)
