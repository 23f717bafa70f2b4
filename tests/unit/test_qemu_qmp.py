# SPDX-License-Identifier: MIT
"""QMP against a real QEMU that runs no guest (-machine none): fast, and no VM needed."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.qemu.qmp import QmpClient, QmpError

QEMU = shutil.which("qemu-system-x86_64")


@pytest.fixture
def idle_qemu(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    if QEMU is None:
        pytest.fail("qemu-system-x86_64 is missing: run `vfio-harness setup --profile unit`")
    socket_path = tmp_path / "qmp.sock"
    process = subprocess.Popen(
        [
            QEMU,
            "-machine",
            "none",
            "-nodefaults",
            "-display",
            "none",
            "-S",
            "-qmp",
            f"unix:{socket_path},server=on,wait=off",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield process, socket_path
    finally:
        process.kill()
        process.wait(timeout=10)


def test_status_stop_cont_and_quit(idle_qemu: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, socket_path = idle_qemu
    with QmpClient.connect(socket_path) as qmp:
        assert qmp.status() == "prelaunch"
        qmp.cont()
        assert qmp.status() == "running"
        qmp.stop()
        assert qmp.status() == "paused"
        with pytest.raises(QmpError, match="no-such-command"):
            qmp.execute("no-such-command")
        qmp.quit()
    assert process.wait(timeout=10) == 0


def test_connect_gives_up_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(QmpError, match="did QEMU start"):
        QmpClient.connect(tmp_path / "absent.sock", timeout=0.2)
