# SPDX-License-Identifier: MIT
"""Boot-to-ready: QEMU start until SSH answers with vfio, vfio_iommu_type1 and mdev loaded.

    tox -e bench -- [--kernels bookworm,trixie,sid] [--runs 3] [--parallel 3]

Reports the median and range per kernel for single boots, then for N VMs started together.
A benchmark: it reports numbers, it does not pass or fail on them.
"""

from __future__ import annotations

import argparse
import statistics
from concurrent.futures import ThreadPoolExecutor

from harness.vm.accel import choose_accelerator
from harness.vm.images import BuiltImage, build_image
from harness.vm.machine import boot


def one_boot(image: BuiltImage) -> float:
    with boot(image) as vm:
        return vm.times.boot_to_ready_s


def summary(label: str, times: list[float]) -> str:
    return (
        f"{label:<28} median {statistics.median(times):5.2f} s  "
        f"min {min(times):5.2f}  max {max(times):5.2f}  (n={len(times)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kernels", default="bookworm,trixie,sid")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=3)
    args = parser.parse_args()
    accel = choose_accelerator()
    print(f"accelerator: {accel.name} ({accel.reason})")
    for name in args.kernels.split(","):
        image = build_image(name)
        singles = [one_boot(image) for _ in range(args.runs)]
        print(summary(f"{name} single", singles))
        with ThreadPoolExecutor(args.parallel) as pool:
            together = list(pool.map(one_boot, [image] * args.parallel))
        print(summary(f"{name} {args.parallel} in parallel", together))


if __name__ == "__main__":
    main()
