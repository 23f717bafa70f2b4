# SPDX-License-Identifier: MIT
"""Follow a growing serial-console log: stamp new lines with host time, parse them as they come.

QEMU appends the guest's console to a file. The watcher reads from its last offset, keeps an
incomplete last line until its newline arrives, and stamps each line with the host's monotonic
clock: the guest's own printk timestamps run slow early under TCG, so only host time says how
long a boot really took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.vm.console import READY_MARKER, ConsoleScanner, ConsoleVerdict, VerdictKind

Clock = Callable[[], float]


@dataclass(frozen=True)
class StampedLine:
    elapsed_s: float  # host seconds since the watch started
    text: str

    def __str__(self) -> str:
        return f"[host +{self.elapsed_s:8.3f}s] {self.text}"


@dataclass(frozen=True)
class WatchResult:
    verdict: ConsoleVerdict
    timed_out: bool
    tail: tuple[str, ...]  # the console's last lines, host-stamped, for the report


class ConsoleWatch:
    """Incremental reader of one console log file."""

    def __init__(
        self,
        path: Path,
        ready_marker: str = READY_MARKER,
        clock: Clock = time.monotonic,
    ) -> None:
        self.path = path
        self._clock = clock
        self._start = clock()
        self._offset = 0
        self._partial = b""
        self._scanner = ConsoleScanner(ready_marker)
        self.lines: list[StampedLine] = []

    def poll(self) -> list[StampedLine]:
        """The complete lines appended since the last poll (none if the file is missing)."""
        try:
            with self.path.open("rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        now = self._clock() - self._start
        new = [StampedLine(now, raw.decode(errors="replace").rstrip("\r")) for raw in complete]
        for line in new:
            self._scanner.feed(line.text)
        self.lines.extend(new)
        return new

    def flush(self) -> list[StampedLine]:
        """Poll, then take a last line without newline too (QEMU exited mid-line)."""
        new = self.poll()
        if self._partial:
            line = StampedLine(self._clock() - self._start, self._partial.decode(errors="replace"))
            self._partial = b""
            self._scanner.feed(line.text)
            self.lines.append(line)
            new.append(line)
        return new

    @property
    def verdict(self) -> ConsoleVerdict:
        return self._scanner.verdict()

    def tail(self, count: int = 40) -> tuple[str, ...]:
        return tuple(str(line) for line in self.lines[-count:])

    def wait(
        self,
        timeout_s: float,
        *,
        alive: Callable[[], bool] = lambda: True,
        stop_on: frozenset[VerdictKind] = frozenset({VerdictKind.PANIC}),
        until_ready: bool = True,
        interval_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> WatchResult:
        """Poll until the ready marker, a verdict in `stop_on`, QEMU's exit, or the timeout.

        With `until_ready=False` the ready marker does not stop the wait: use it to watch a
        booted guest for a panic while something else drives it.

        `alive` tells whether QEMU still runs: once it has exited nothing more can come, so
        the rest of the file is read and the verdict returned at once.
        """
        deadline = self._clock() + timeout_s
        while True:
            running = alive()
            if running:
                self.poll()
            else:
                self.flush()
            verdict = self.verdict
            if (until_ready and verdict.ready) or verdict.kind in stop_on or not running:
                return WatchResult(verdict, False, self.tail())
            if self._clock() >= deadline:
                return WatchResult(verdict, True, self.tail())
            sleep(interval_s)
