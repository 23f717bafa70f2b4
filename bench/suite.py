# SPDX-License-Identifier: MIT
"""The conformance suite's wall time with 1 and 2 workers, and the cost of running each test
through the host proxy compared with running it directly inside the guest.

    tox -e bench -- bench/suite.py [--kernel bookworm]

"Direct" runs `python3 -m pytest tests/uapi` inside one guest (our module loaded) and takes
pytest's own session time; "proxied" is the host's pytest session through the plugin (VM
start, module load and runner start-up included, as a user sees it). Reports numbers only.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.images.build import build_image
from harness.kmod.module_cache import build_vendor_module
from harness.vm.guest_python import GUEST_ROOT, push_harness, push_tree
from harness.vm.saved_state import start_vm

ROOT = Path(__file__).resolve().parents[1]
SUITE_ROOT = "/opt/vfio-suite"


def junit_counts(path: Path) -> tuple[int, int, int]:
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    return total, failed, skipped


def proxied(kernel: str, workers: int) -> tuple[float, tuple[int, int, int]]:
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as scratch:
        reports = Path(scratch)
        command = [str(Path(sys.executable).with_name("vfio-harness")), "run", f"--kernel={kernel}"]
        command += ["-n", str(workers), "--reports", str(reports)]
        started = time.monotonic()
        subprocess.run(command, cwd=ROOT, check=False, capture_output=True)
        return time.monotonic() - started, junit_counts(reports / "junit.xml")


def suite_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(ROOT / "tests" / "__init__.py", "tests/__init__.py")
        for path in sorted((ROOT / "tests" / "uapi").glob("*.py")):
            tar.add(path, f"tests/uapi/{path.name}")
    return buffer.getvalue()


def direct(kernel: str) -> tuple[float, str]:
    image = build_image(kernel)
    module = build_vendor_module(image, lambda _line: None)
    with start_vm(image) as vm:
        vm.ssh.put(module, "/tmp/vfio_harness_mdev.ko")
        vm.run("modprobe -a vfio vfio_iommu_type1 mdev && insmod /tmp/vfio_harness_mdev.ko")
        push_harness(vm)
        push_tree(vm, suite_tar(), SUITE_ROOT)
        result = vm.ssh.run(
            f"cd {SUITE_ROOT} && PYTHONPATH={GUEST_ROOT} "
            "python3 -m pytest -q -p no:cacheprovider tests/uapi",
            timeout=3600,
            check=False,
        )
    summary = result.stdout.strip().splitlines()[-1]
    match = re.search(r"in ([0-9.]+)s", summary)
    return (float(match.group(1)) if match else float("nan")), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--kernel", default="bookworm")
    args = parser.parse_args()
    os.environ.setdefault("HARNESS_VM_IMAGES", str(ROOT / "vm_images"))
    times = {}
    for workers in (1, 2):
        wall, (total, failed, skipped) = proxied(args.kernel, workers)
        times[workers] = (wall, total)
        print(
            f"{args.kernel} proxied, {workers} worker(s): {wall:6.1f} s for {total} tests "
            f"({failed} failed, {skipped} skipped)",
            flush=True,
        )
    inside, summary = direct(args.kernel)
    print(f"{args.kernel} direct in one guest: {inside:6.1f} s ({summary})", flush=True)
    wall, total = times[1]
    print(f"per-test overhead of the proxy (1 worker): {(wall - inside) / total * 1000:.0f} ms")


if __name__ == "__main__":
    main()
