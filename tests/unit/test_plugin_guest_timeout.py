# SPDX-License-Identifier: MIT
"""A guest test's own time limit (the guest_timeout marker) against --guest-timeout."""

from __future__ import annotations

import pytest

from harness.plugin.suite_run import guest_timeout


class MarkedItem:
    """Stands in for a pytest.Item: only its closest guest_timeout marker matters."""

    def __init__(self, *args: object) -> None:
        self.marker = pytest.mark.guest_timeout(*args).mark if args else None

    def get_closest_marker(self, name: str) -> pytest.Mark | None:
        return self.marker if name == "guest_timeout" else None


@pytest.mark.parametrize(
    ("marked", "default", "limit"),
    [((), 600.0, 600.0), ((60,), 600.0, 60.0), ((900,), 600.0, 600.0), ((1.5,), 10.0, 1.5)],
    ids=["unmarked", "lower", "higher-is-capped", "fraction"],
)
def test_the_lower_limit_wins(marked: tuple[float, ...], default: float, limit: float) -> None:
    assert guest_timeout(MarkedItem(*marked), default) == limit  # type: ignore[arg-type]
