# SPDX-License-Identifier: MIT
"""The shortest program that still reproduces a finding: delta debugging over its ops.

    smallest = minimize(program, reproduces)    # reproduces(candidate) -> bool

Chunks of ops are dropped, halving the chunk size down to single ops, until no single op can
go (Zeller's ddmin, complement steps only). `reproduces` is called at most `budget` times; a
finding whose reproduction is flaky keeps the shortest program that did reproduce. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def minimize(
    program: Sequence[T], reproduces: Callable[[list[T]], bool], budget: int = 200
) -> list[T]:
    current = list(program)
    calls = 0
    chunk = max(len(current) // 2, 1)
    while current and calls < budget:
        removed = False
        start = 0
        while start < len(current) and calls < budget:
            candidate = current[:start] + current[start + chunk :]
            calls += 1
            if candidate and reproduces(candidate):
                current = candidate
                removed = True
            else:
                start += chunk
        if chunk == 1 and not removed:
            break
        chunk = max(chunk // 2, 1)
    return current


__all__ = ["minimize"]
