# SPDX-License-Identifier: MIT
"""A module fixture that must be torn down before test_order_b.py's test runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest


@pytest.fixture(scope="module")
def module_resource(session_resource: str, note_order: Callable[[str], None]) -> Iterator[str]:
    note_order("a-setup")
    yield "a"
    note_order("a-teardown")


def test_order_first(module_resource: str) -> None:
    assert module_resource == "a"


def test_order_second(module_resource: str) -> None:
    assert module_resource == "a"
