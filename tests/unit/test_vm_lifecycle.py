# SPDX-License-Identifier: MIT
"""What keeps VMs from leaking: locked run directories, the stale sweep and the watchdog.

A `sleep` in its own session stands in for QEMU: the watchdog and the sweep only care about a
process group and a run directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.vm.run_dir import LOCK_NAME, QEMU_PIDFILE, RunDir, sweep_stale_runs
from harness.vm.watchdog import Watchdog
from tests.processes import SAFETY_TIMEOUT_S, alive, as_foreground_job, wait_exited


def fake_qemu(run_dir: Path) -> subprocess.Popen[bytes]:
    """A long sleep whose command line names the run directory, as QEMU's does."""
    process = subprocess.Popen(["sh", "-c", f"sleep 300; : {run_dir}"], start_new_session=True)
    (run_dir / QEMU_PIDFILE).write_text(f"{process.pid}\n")
    return process


def gone(process: subprocess.Popen[bytes], within: float = SAFETY_TIMEOUT_S) -> bool:
    try:
        process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        return False
    return True


def cleanup(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_run_dir_is_locked_until_released(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path)
    assert (run.path / LOCK_NAME).exists()
    assert sweep_stale_runs(tmp_path) == []
    assert run.path.is_dir()
    run.release()
    assert sweep_stale_runs(tmp_path) == [run.path]
    assert not run.path.exists()


def test_sweep_kills_the_qemu_of_an_abandoned_directory(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path)
    qemu = fake_qemu(run.path)
    try:
        run.release()  # as if the launcher and its watchdog had both been SIGKILLed
        assert sweep_stale_runs(tmp_path) == [run.path]
        assert gone(qemu)
        assert not run.path.exists()
    finally:
        cleanup(qemu)


def test_sweep_spares_a_reused_pid(tmp_path: Path) -> None:
    """A pidfile naming a process that is not this directory's QEMU must not be killed."""
    run = RunDir.create(tmp_path)
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        (run.path / QEMU_PIDFILE).write_text(f"{stranger.pid}\n")
        run.release()
        assert sweep_stale_runs(tmp_path) == [run.path]
        assert stranger.poll() is None
    finally:
        cleanup(stranger)


def test_sweep_leaves_young_unlocked_directories(tmp_path: Path) -> None:
    """A directory without a lock file may be one being created right now."""
    young = tmp_path / "vm-young"
    young.mkdir()
    old = tmp_path / "vm-old"
    old.mkdir()
    past = time.time() - 3600
    os.utime(old, (past, past))
    assert sweep_stale_runs(tmp_path) == [old]
    assert young.is_dir()


def test_watchdog_release_leaves_everything_alone(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path)
    qemu = fake_qemu(run.path)
    try:
        assert run.lock_fd is not None
        watchdog = Watchdog.start(qemu.pid, run.path, run.lock_fd)
        watchdog.release()
        assert watchdog.process.returncode == 0
        assert qemu.poll() is None
        assert run.path.is_dir()
    finally:
        cleanup(qemu)
        run.remove()


def test_watchdog_fires_when_the_pipe_drops(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path)
    qemu = fake_qemu(run.path)
    try:
        assert run.lock_fd is not None
        watchdog = Watchdog.start(qemu.pid, run.path, run.lock_fd)
        watchdog.fire()
        assert gone(qemu)
        assert not run.path.exists()
    finally:
        cleanup(qemu)
        run.release()


def test_watchdog_holds_the_lock_after_the_launcher_lets_go(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path)
    qemu = fake_qemu(run.path)
    try:
        assert run.lock_fd is not None
        watchdog = Watchdog.start(qemu.pid, run.path, run.lock_fd)
        run.release()
        assert sweep_stale_runs(tmp_path) == []  # the watchdog still holds it
        watchdog.fire()
        assert gone(qemu)
    finally:
        cleanup(qemu)


LAUNCHER = textwrap.dedent(
    """
    import subprocess, sys, threading, time
    from pathlib import Path
    from harness.vm.run_dir import QEMU_PIDFILE, RunDir
    from harness.vm.watchdog import Watchdog

    def start():
        run = RunDir.create(Path(sys.argv[1]))
        qemu = subprocess.Popen(["sh", "-c", f"sleep 300; : {run.path}"],
                                start_new_session=True)
        (run.path / QEMU_PIDFILE).write_text(str(qemu.pid))
        watchdog = Watchdog.start(qemu.pid, run.path, run.lock_fd)
        print(qemu.pid, watchdog.process.pid, run.path, flush=True)

    # From a thread that then exits: unlike PR_SET_PDEATHSIG, the watchdog does not care.
    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    time.sleep(300)
    """
)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_launcher_death_kills_qemu_and_removes_the_run_dir(tmp_path: Path, how: int) -> None:
    launcher = subprocess.Popen(
        as_foreground_job([sys.executable, "-c", LAUNCHER, str(tmp_path)]),
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert launcher.stdout is not None
    qemu_text, watchdog_text, run_path = launcher.stdout.readline().split()
    qemu_pid, watchdog_pid = int(qemu_text), int(watchdog_text)
    try:
        launcher.send_signal(how)
        launcher.wait(timeout=SAFETY_TIMEOUT_S)
        # The watchdog exits once it has killed QEMU and removed the directory.
        assert wait_exited(watchdog_pid), "the watchdog never finished"
        assert not alive(qemu_pid), "the fake QEMU outlived its launcher"
        assert not Path(run_path).exists(), "the run directory outlived its launcher"
    finally:
        if alive(qemu_pid):
            os.killpg(qemu_pid, signal.SIGKILL)
        launcher.kill()
        launcher.wait()
