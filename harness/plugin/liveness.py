# SPDX-License-Identifier: MIT
"""Is the guest still answering while a test runs? A guest whose kernel hangs without an oops
(every CPU spinning, a deadlock with interrupts off) says nothing on the console and never
ends its test; without this the host would wait the whole --guest-timeout (600 s, stretched
8-fold under TCG) before replacing it.

Liveness asks now and then, in a thread of its own so the host's wait loop never blocks: a
probe is a cheap command over a second SSH channel (the test's own channel stays busy). The
guest is unresponsive once no probe has answered for SILENCE_LIMIT_S since the test started.
The limit is not stretched for TCG: a guest that cannot run `true` for two minutes is hung,
however slow its accelerator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

PROBE_INTERVAL_S = 10.0
SILENCE_LIMIT_S = 120.0

# Runs one probe: True if the guest answered within the given seconds.
Probe = Callable[[float], bool]


class Liveness:
    def __init__(
        self,
        probe: Probe,
        *,
        interval_s: float = PROBE_INTERVAL_S,
        silence_limit_s: float = SILENCE_LIMIT_S,
        clock: Callable[[], float] = time.monotonic,
        start_thread: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self._probe = probe
        self._interval = interval_s
        self._limit = silence_limit_s
        self._clock = clock
        self._start_thread = start_thread or _daemon_thread
        self._lock = threading.Lock()
        self._last_answer = clock()
        self._last_start = float("-inf")
        self._in_flight = False

    def restart(self) -> None:
        """A new test starts: the silence counts from now."""
        with self._lock:
            self._last_answer = self._clock()

    def unresponsive(self) -> str | None:
        """Why the guest counts as hung, or None; starts a probe when one is due."""
        now = self._clock()
        with self._lock:
            silent = now - self._last_answer
            due = not self._in_flight and now - self._last_start >= self._interval
            if due:
                self._in_flight = True
                self._last_start = now
        if silent >= self._limit:
            return f"the guest has not answered over SSH for {silent:.0f} s"
        if due:
            self._start_thread(self._run_probe)
        return None

    def _run_probe(self) -> None:
        try:
            answered = self._probe(self._limit)
        except Exception:  # a dead session, a timeout: no answer either way
            answered = False
        with self._lock:
            self._in_flight = False
            if answered:
                self._last_answer = self._clock()


def _daemon_thread(target: Callable[[], None]) -> None:
    threading.Thread(target=target, name="guest-liveness", daemon=True).start()


__all__ = ["PROBE_INTERVAL_S", "SILENCE_LIMIT_S", "Liveness", "Probe"]
