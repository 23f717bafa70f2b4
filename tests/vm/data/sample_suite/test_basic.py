# SPDX-License-Identifier: MIT
"""One test of each outcome, and the environment contract."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_pass() -> None:
    if os.environ.get("HARNESS_TARGET") == "vm":  # the plugin loaded our module first
        assert Path("/sys/module/vfio_harness_mdev").is_dir()


def test_fail() -> None:
    print("some output of the failing test")
    assert 1 + 1 == 3, "deliberately wrong"


def test_skip() -> None:
    pytest.skip("deliberately skipped")


def test_environment() -> None:
    # Run with --mdev-type sample-type: the plugin passes it on where the tests run.
    assert os.environ.get("HARNESS_MDEV_TYPE") == "sample-type"
    assert os.environ.get("HARNESS_TARGET") in ("vm", "local")


def test_warn_in_kernel_log() -> None:
    # A WARN's shape as the kernel prints it (userspace cannot trigger a real one on a stock
    # kernel): the plugin must attribute it to this test and fail it.
    lines = (
        "<4>------------[ cut here ]------------",
        "<4>WARNING: CPU: 0 PID: 1 at drivers/vfio/sample.c:42 sample_func+0x10/0x20 [sample]",
        "<4>Call Trace:",
        "<4> <TASK>",
        "<4> sample_caller+0x1/0x2 [sample]",
        "<4> </TASK>",
        "<4>---[ end trace 0000000000000000 ]---",
    )
    with open("/dev/kmsg", "w") as kmsg:
        for line in lines:
            kmsg.write(line + "\n")
            kmsg.flush()  # one record per write
