# SPDX-License-Identifier: MIT
"""Liveness: probes while a test runs, and when a silent guest counts as hung."""

from __future__ import annotations

from collections.abc import Callable

from harness.plugin.liveness import Liveness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Probes:
    """Probes run when the test says: started ones wait in `pending`."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []
        self.answers = True
        self.asked = 0

    def probe(self, _timeout: float) -> bool:
        self.asked += 1
        if isinstance(self.answers, BaseException):
            raise self.answers
        return self.answers

    def start(self, target: Callable[[], None]) -> None:
        self.pending.append(target)

    def finish_all(self) -> None:
        while self.pending:
            self.pending.pop(0)()


def liveness(clock: Clock, probes: Probes) -> Liveness:
    return Liveness(
        probes.probe, interval_s=10, silence_limit_s=120, clock=clock, start_thread=probes.start
    )


def test_a_guest_that_answers_is_never_hung() -> None:
    clock, probes = Clock(), Probes()
    alive = liveness(clock, probes)
    for _ in range(100):  # 500 s of polling every 5 s
        assert alive.unresponsive() is None
        probes.finish_all()
        clock.now += 5
    assert 45 <= probes.asked <= 51, "a probe every 10 s, never two at once"


def test_silence_past_the_limit_is_a_hang() -> None:
    clock, probes = Clock(), Probes()
    alive = liveness(clock, probes)
    assert alive.unresponsive() is None  # a probe starts, and never comes back
    clock.now += 119
    assert alive.unresponsive() is None
    assert len(probes.pending) == 1, "no second probe while one hangs"
    clock.now += 1
    assert alive.unresponsive() == "the guest has not answered over SSH for 120 s"


def test_failed_probes_do_not_count_as_answers() -> None:
    clock, probes = Clock(), Probes()
    probes.answers = False
    alive = liveness(clock, probes)
    for _ in range(12):
        assert alive.unresponsive() is None
        probes.finish_all()
        clock.now += 10
    assert alive.unresponsive() is not None


def test_a_probe_that_raises_is_no_answer() -> None:
    clock, probes = Clock(), Probes()
    probes.answers = TimeoutError()  # type: ignore[assignment]
    alive = liveness(clock, probes)
    alive.unresponsive()
    probes.finish_all()
    clock.now += 120
    assert alive.unresponsive() is not None


def test_silence_counts_from_the_start_of_the_test() -> None:
    clock, probes = Clock(), Probes()
    alive = liveness(clock, probes)
    clock.now += 1000  # idle between tests, no polling
    alive.restart()
    assert alive.unresponsive() is None
