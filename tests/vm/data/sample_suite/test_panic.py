# SPDX-License-Identifier: MIT
"""A guest panic, then a test that must pass on the VM that replaces the dead one."""

from __future__ import annotations

from pathlib import Path


def test_panic() -> None:
    Path("/proc/sysrq-trigger").write_text("c")


def test_after_panic() -> None:
    assert Path("/sys/module/vfio_harness_mdev").is_dir()
