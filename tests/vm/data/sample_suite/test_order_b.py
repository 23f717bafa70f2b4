# SPDX-License-Identifier: MIT
"""Runs after test_order_a.py: its module fixture was set up once and is torn down by now."""

from __future__ import annotations

from pathlib import Path


def test_order_check(session_resource: str, order_log: Path) -> None:
    assert order_log.read_text().split() == ["session-setup", "a-setup", "a-teardown"]
