# SPDX-License-Identifier: MIT
"""Delta debugging of a finding's program down to what it needs."""

from __future__ import annotations

from harness.campaign.minimize import minimize


def test_only_the_needed_ops_are_left_in_their_order() -> None:
    program = list(range(20))
    calls: list[list[int]] = []

    def reproduces(candidate: list[int]) -> bool:
        calls.append(candidate)
        return 3 in candidate and 11 in candidate and 17 in candidate

    assert minimize(program, reproduces) == [3, 11, 17]
    assert len(calls) < 60


def test_a_single_op_and_a_program_that_needs_everything() -> None:
    assert minimize([5, 6, 7], lambda c: 6 in c) == [6]
    assert minimize([1, 2, 3], lambda c: c == [1, 2, 3]) == [1, 2, 3]


def test_the_budget_bounds_the_runs_and_keeps_what_reproduced() -> None:
    runs = 0

    def reproduces(candidate: list[int]) -> bool:
        nonlocal runs
        runs += 1
        return 0 in candidate

    result = minimize(list(range(64)), reproduces, budget=3)
    assert runs == 3
    assert 0 in result and len(result) < 64


def test_a_flaky_finding_keeps_the_shortest_program_that_did_reproduce() -> None:
    answers = iter([True, False, False, False, False, False])
    result = minimize([1, 2, 3, 4], lambda c: next(answers, False))
    assert result == [3, 4]
