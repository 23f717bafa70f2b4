# SPDX-License-Identifier: MIT
"""Faults in the middle of a suite: N tests that crash the guest's kernel (sysrq "c") or hang
the guest (no SSH answer), each followed by a test that must pass on the VM that replaces it.

    tox -e bench -- bench/faults.py [--fault panic|hang] [--count 10] [--kernel bookworm]

Counts the faults the run recovered from (the faulting test failed with the kernel's panic, or
the hang, in its report, and the next test passed on a new VM), the run's wall time and the
time each recovery cost. It reports; it does not assert.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.images.build import recipe_dir
from harness.kmod.module_cache import kmod_dir

SUITE = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    import pytest

    N = {count}
    STEPS = [(kind, n) for n in range(N) for kind in ("fault", "after")]


    def hang() -> None:
        Path("/proc/sys/kernel/sched_rt_runtime_us").write_text("-1")
        for cpu in sorted(os.sched_getaffinity(0)):
            if os.fork() == 0:
                os.sched_setaffinity(0, {{cpu}})
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(99))
                while True:
                    pass
        time.sleep(3600)


    @pytest.mark.parametrize(("kind", "n"), STEPS, ids=[f"{{k}}-{{n}}" for k, n in STEPS])
    def test_step(kind: str, n: int) -> None:
        if kind == "fault" and "{fault}" == "panic":
            Path("/proc/sysrq-trigger").write_text("c")
        if kind == "fault" and "{fault}" == "hang":
            hang()
        assert Path("/sys/module/vfio_harness_mdev").is_dir()
    """
)
# What the faulting test's report must say.
SEEN = {
    "panic": ("Kernel panic", "sysrq: Trigger a crash", "SysRq : Trigger a crash"),
    "hang": ("has not answered over SSH",),
}


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """Per test id: its outcome and its failure text."""
    found: dict[str, tuple[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        step = name.split("[", 1)[1].split("-bookworm", 1)[0].rsplit("-", 1)
        failure = next((c for c in case if c.tag in ("failure", "error")), None)
        outcome = "failed" if failure is not None else "passed"
        text = (failure.text or "") + (failure.get("message") or "") if failure is not None else ""
        found["-".join(step)] = (outcome, text)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--fault", choices=sorted(SEEN), default="panic")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--kernel", default="bookworm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as scratch:
        work = Path(scratch)
        (work / "fault_suite").mkdir()
        suite = SUITE.format(count=args.count, fault=args.fault)
        (work / "fault_suite" / "test_faults.py").write_text(suite)
        (work / "pytest.ini").write_text("[pytest]\nguest_suites = fault_suite\n")
        junit = work / "junit.xml"
        env = {
            **os.environ,
            "HARNESS_VM_IMAGES": str(recipe_dir()),
            "HARNESS_KMOD_SRC": str(kmod_dir()),
        }
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
        command += ["--junitxml", str(junit), "--kernel", args.kernel]
        started = time.monotonic()
        run = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, check=False
        )
        wall = time.monotonic() - started
        if not junit.is_file():
            sys.exit(f"pytest wrote no JUnit (exit {run.returncode}):\n{run.stdout}{run.stderr}")
        found = outcomes(junit)
    recovered = 0
    for n in range(args.count):
        fault = found.get(f"fault-{n}", ("missing", ""))
        after = found.get(f"after-{n}", ("missing", ""))
        seen = fault[0] == "failed" and any(s in fault[1] for s in SEEN[args.fault])
        recovered += seen and after[0] == "passed"
        said = f" saying {SEEN[args.fault][0]!r}" if seen else ""
        print(f"{args.fault} {n}: test {fault[0]}{said}; the next test {after[0]}")
    replaced = run.stdout.count("replacing the VM") + run.stderr.count("replacing the VM")
    print(f"recovered {recovered} of {args.count} ({args.fault}); {replaced} VMs replaced")
    print(
        f"run wall time {wall:.0f} s, {wall / args.count:.1f} s per fault and the test "
        f"after it (pytest exit {run.returncode}: the faulting tests fail)"
    )


if __name__ == "__main__":
    main()
