# SPDX-License-Identifier: MIT
"""A tiny guest suite for tests/vm/test_guest_runner.py: fixtures of every scope log their
setup and teardown to ORDER_LOG, so a test can check pytest's nextitem semantics held."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ORDER_LOG = Path("/tmp/vfio-harness-sample-order.log")


def note(what: str) -> None:
    with ORDER_LOG.open("a") as log:
        log.write(what + "\n")


@pytest.fixture(scope="session")
def order_log() -> Path:
    return ORDER_LOG


@pytest.fixture(scope="session")
def note_order() -> Callable[[str], None]:
    return note


@pytest.fixture(scope="session")
def session_resource() -> Iterator[str]:
    ORDER_LOG.unlink(missing_ok=True)
    note("session-setup")
    yield "session"
    note("session-teardown")
