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
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return process, out


def _notes(out: Path) -> list[list[str]]:
    return [line.split() for f in sorted(out.iterdir()) for line in f.read_text().splitlines()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _assert_gone(notes: list[list[str]], within: float = 15.0) -> None:
    qemus = {int(n[3]) for n in notes}
    run_dirs = {Path(n[4]) for n in notes}
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(map(_alive, qemus)) and not any(d.exists() for d in run_dirs):
            return
        time.sleep(0.1)
    assert not [p for p in qemus if _alive(p)], "QEMU processes left behind"
    assert not [d for d in run_dirs if d.exists()], "run directories left behind"


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
        time.sleep(0.2)
        notes = _notes(out)
        assert _alive(int(notes[0][3]))
        os.kill(process.pid if victim == "pytest" else int(notes[0][2]), how)
        _assert_gone(notes)
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _output(process: subprocess.Popen[str]) -> str:
    return process.stdout.read() if process.stdout is not None else ""
