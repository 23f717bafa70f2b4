# SPDX-License-Identifier: MIT
"""The pytest fixtures, as users run them: one VM per xdist worker, nothing left behind
when a run ends, is interrupted, or has its worker killed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.plugin.policy import vm_unavailable
from tests.processes import SAFETY_TIMEOUT_S, alive, as_foreground_job, pids_naming, wait_exited

pytestmark = pytest.mark.vm

RECIPES = Path(__file__).resolve().parents[2] / "vm_images"

INNER_TESTS = textwrap.dedent(
    """
    import os, time
    from pathlib import Path

    OUT = Path(os.environ["FIXTURE_OUT"])

    def _note(vm, what):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        line = f"{what} {worker} {os.getpid()} {vm.process.pid} {vm.run_dir}\\n"
        with open(OUT / f"{worker}-{os.getpid()}", "a") as out:
            out.write(line)

    def test_shared_1(vm):
        _note(vm, "shared")
    def test_shared_2(vm):
        _note(vm, "shared")
    def test_shared_3(vm):
        _note(vm, "shared")
    def test_shared_4(vm):
        _note(vm, "shared")
    def test_shared_5(vm):
        _note(vm, "shared")
    def test_shared_6(vm):
        _note(vm, "shared")

    def test_hang(vm):
        _note(vm, "hang")
        time.sleep(600)
    """
)


def _need_qemu() -> None:
    if shutil.which("qemu-system-x86_64") is None:
        vm_unavailable("qemu-system-x86_64 not found: run `vfio-harness setup --profile vm`")


def _inner(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    out = tmp_path / "out"
    out.mkdir()
    # The inner pytest runs in a scratch directory, and tox installs the package as a wheel.
    env = {**os.environ, "FIXTURE_OUT": str(out), "HARNESS_VM_IMAGES": str(RECIPES)}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    process = subprocess.Popen(
        as_foreground_job(command),  # a SIGINT is then a Ctrl-C, however we were started
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, out


def _notes(out: Path) -> list[list[str]]:
    return [line.split() for f in sorted(out.iterdir()) for line in f.read_text().splitlines()]


def _assert_gone(notes: list[list[str]], watchdogs: set[int] | None = None) -> None:
    """Each VM's watchdog exits last, after a normal close (told to stand down) or after it
    has killed QEMU and removed the run directory itself: nothing may be left after that."""
    qemus = {int(n[3]) for n in notes}
    run_dirs = {Path(n[4]) for n in notes}
    for watchdog in watchdogs if watchdogs is not None else _watchdogs_of(run_dirs):
        assert wait_exited(watchdog), f"the watchdog {watchdog} never finished"
    assert not [p for p in qemus if alive(p)], "QEMU processes left behind"
    assert not [d for d in run_dirs if d.exists()], "run directories left behind"


def _watchdogs_of(run_dirs: set[Path]) -> set[int]:
    return {pid for run_dir in run_dirs for pid in _watchdogs(run_dir)}


def _watchdogs(run_dir: Path) -> list[int]:
    return [pid for pid in pids_naming(str(run_dir)) if b"watchdog" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_one_vm_per_xdist_worker(tmp_path: Path) -> None:
    _need_qemu()
    process, out = _inner(tmp_path, "-n", "3", "-k", "shared", "--kernel", "bookworm")
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    notes = _notes(out)
    assert len(notes) == 6
    workers = {n[1] for n in notes}
    assert len(workers) == 3, f"expected 3 xdist workers, got {workers}\n{output}"
    by_worker = {w: {n[3] for n in notes if n[1] == w} for w in workers}
    assert all(len(pids) == 1 for pids in by_worker.values()), f"a worker used two VMs: {by_worker}"
    assert len({n[3] for n in notes}) == 3, "two workers shared a VM"
    _assert_gone(notes)


@pytest.mark.parametrize(
    ("args", "victim", "how"),
    [
        ((), "pytest", signal.SIGINT),  # Ctrl-C: pytest tears its fixtures down
        ((), "pytest", signal.SIGKILL),  # nothing runs in the process: the watchdog cleans
        (("-n", "1", "--max-worker-restart", "0"), "worker", signal.SIGKILL),  # crashed worker
    ],
    ids=["sigint", "sigkill", "sigkill-xdist-worker"],
)
def test_interrupted_runs_leave_nothing(
    tmp_path: Path, args: tuple[str, ...], victim: str, how: int
) -> None:
    _need_qemu()
    process, out = _inner(tmp_path, *args, "-k", "hang", "--kernel", "bookworm")
    try:
        deadline = time.monotonic() + 300
        while not any(out.iterdir()):
            if process.poll() is not None:
                pytest.fail(f"the inner run ended early:\n{_output(process)}", pytrace=False)
            assert time.monotonic() < deadline, "the inner test never got its VM"
            time.sleep(0.1)
        notes = _notes(out)
        assert alive(int(notes[0][3]))
        watchdogs = _watchdogs_of({Path(n[4]) for n in notes})
        assert watchdogs, "no watchdog found for the inner test's VM"
        os.kill(process.pid if victim == "pytest" else int(notes[0][2]), how)
        if how == signal.SIGINT:  # pytest stops the test, tears its VM down and exits
            process.wait(timeout=SAFETY_TIMEOUT_S)
            assert process.returncode == pytest.ExitCode.INTERRUPTED, _output(process)
        _assert_gone(notes, watchdogs)
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _output(process: subprocess.Popen[str]) -> str:
    return process.stdout.read() if process.stdout is not None else ""
