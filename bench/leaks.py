# SPDX-License-Identifier: MIT
"""Leaks: run pytest with the VM fixtures N times in each way a run ends: normally, by SIGINT
(Ctrl-C), by SIGTERM (a CI job's timeout), by SIGKILL of pytest, and by SIGKILL of an xdist
worker; count what is left behind. `--load` keeps that many host CPUs busy meanwhile.

    tox -e bench -- bench/leaks.py [--each 20] [--load 2] [--kernel bookworm]

After each run it waits up to 15 s for watchdogs to finish, then counts QEMU processes,
overlay files and run directories of the harness. It reports the counts; it does not assert.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

from harness.core.cache import cache_root
from harness.images.build import recipe_dir
from harness.vm.machine import runs_dir

INNER = textwrap.dedent(
    """
    import os, time
    from pathlib import Path

    def _ready():
        Path(os.environ["LEAK_READY"], str(os.getpid())).touch()

    def test_shared(vm):
        vm.run("true")

    def test_fresh(fresh_vm):
        fresh_vm.run("true")
        _ready()
        if os.environ.get("LEAK_HANG"):
            time.sleep(600)
    """
)
MODES = ("complete", "sigint", "sigterm", "sigkill-pytest", "sigkill-worker")


def private_cache(scratch: Path) -> Path:
    """A cache sharing images and saved states with the real one but with its own run
    directories, so VMs of other programs running meanwhile are not counted."""
    real = cache_root()
    private = scratch / "cache"
    private.mkdir()
    for shared in ("images", "states", "apt", "debian", "kernels", "build-envs"):
        (real / shared).mkdir(parents=True, exist_ok=True)
        (private / shared).symlink_to(real / shared)
    return private


def leftovers() -> tuple[int, int, int]:
    root = runs_dir()
    qemus = subprocess.run(
        ["pgrep", "-f", f"qemu-system.*{root}"], capture_output=True, text=True, check=False
    ).stdout.split()
    overlays = list(root.glob("*/*.qcow2"))
    dirs = [d for d in root.iterdir() if d.is_dir()]
    return len(qemus), len(overlays), len(dirs)


def one_run(mode: str, kernel: str, workdir: Path) -> tuple[float, tuple[int, int, int]]:
    ready = workdir / "ready"
    ready.mkdir(exist_ok=True)
    for old in ready.iterdir():
        old.unlink()
    env = {**os.environ, "LEAK_READY": str(ready), "HARNESS_VM_IMAGES": str(recipe_dir())}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--kernel", kernel]
    if mode != "complete":
        env["LEAK_HANG"] = "1"
    if mode == "sigkill-worker":
        args += ["-n", "2", "--max-worker-restart", "0"]
    started = time.monotonic()
    process = subprocess.Popen(
        [*args, "test_inner.py"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if mode != "complete":
        while not any(ready.iterdir()) and process.poll() is None:
            time.sleep(0.05)
        pid = int(next(ready.iterdir()).name) if any(ready.iterdir()) else process.pid
        victim, how = {
            "sigint": (process.pid, signal.SIGINT),
            "sigterm": (process.pid, signal.SIGTERM),
            "sigkill-pytest": (process.pid, signal.SIGKILL),
            "sigkill-worker": (pid, signal.SIGKILL),
        }[mode]
        os.kill(victim, how)
    try:
        process.wait(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(leftovers()):
        time.sleep(0.1)
    return elapsed, leftovers()


@contextlib.contextmanager
def busy_cpus(count: int) -> Iterator[None]:
    """`count` processes spinning on the host, as on a loaded CI machine."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--each", type=int, default=20, help="runs per way of ending")
    parser.add_argument("--load", type=int, default=0, help="host CPUs kept busy meanwhile")
    parser.add_argument("--kernel", default="bookworm")
    args = parser.parse_args()
    left: dict[str, list[int]] = {mode: [0, 0, 0] for mode in MODES}
    longest: dict[str, float] = dict.fromkeys(MODES, 0.0)
    with tempfile.TemporaryDirectory(prefix="bench-leaks-") as scratch, busy_cpus(args.load):
        workdir = Path(scratch)
        os.environ["HARNESS_CACHE_DIR"] = str(private_cache(workdir))
        (workdir / "test_inner.py").write_text(INNER)
        for index in range(args.each * len(MODES)):
            mode = MODES[index % len(MODES)]
            elapsed, found = one_run(mode, args.kernel, workdir)
            left[mode] = [a + b for a, b in zip(left[mode], found, strict=True)]
            longest[mode] = max(longest[mode], elapsed)
            qemus, overlays, dirs = found
            print(
                f"run {index + 1:3d} {mode:<15} {elapsed:5.1f} s  left: {qemus} QEMU, "
                f"{overlays} overlays, {dirs} run dirs",
                flush=True,
            )
    print(f"{args.each} runs each, {args.load} host CPUs kept busy:")
    for mode in MODES:
        qemus, overlays, dirs = left[mode]
        print(
            f"  {mode:<15} longest {longest[mode]:5.1f} s; left in all: {qemus} QEMU, "
            f"{overlays} overlays, {dirs} run dirs"
        )


if __name__ == "__main__":
    main()
