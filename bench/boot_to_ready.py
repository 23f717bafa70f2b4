# SPDX-License-Identifier: MIT
"""Boot-to-ready: QEMU start until SSH answers with vfio, vfio_iommu_type1 and mdev loaded.

    tox -e bench -- bench/boot_to_ready.py [--kernels K,K] [--runs 3] [--parallel 3]

Per kernel: cold boots and restores from the saved state, one VM at a time and N started
together. A benchmark: it reports numbers, it does not pass or fail on them.
"""

from __future__ import annotations

import argparse
import statistics
from concurrent.futures import ThreadPoolExecutor

from harness.images.build import BuiltImage, build_image
from harness.vm.accel import Accelerator, choose_accelerator
from harness.vm.saved_state import Fresh, start_vm


def one(image: BuiltImage, accel: Accelerator, fresh: Fresh) -> float:
    with start_vm(image, accelerator=accel, fresh=fresh) as vm:
        if fresh != "auto":
            assert vm.times.how == ("boot" if fresh == "boot" else "restore")
        return vm.times.boot_to_ready_s


def summary(label: str, times: list[float]) -> str:
    return (
        f"{label:<34} median {statistics.median(times):5.2f} s  "
        f"min {min(times):5.2f}  max {max(times):5.2f}  (n={len(times)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--kernels", default="bookworm,trixie,sid")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=3)
    args = parser.parse_args()
    accel = choose_accelerator()
    print(f"accelerator: {accel.name} ({accel.reason})", flush=True)
    for name in args.kernels.split(","):
        image = build_image(name)
        one(image, accel, "auto")  # makes the saved state if it is missing
        modes: tuple[tuple[Fresh, str], ...] = (("boot", "cold boot"), ("restore", "restore"))
        for fresh, what in modes:
            times = [one(image, accel, fresh) for _ in range(args.runs)]
            print(summary(f"{name} {what}", times), flush=True)
            with ThreadPoolExecutor(args.parallel) as pool:
                runs = [pool.submit(one, image, accel, fresh) for _ in range(args.parallel)]
                together = [run.result() for run in runs]
            print(summary(f"{name} {what}, {args.parallel} together", together), flush=True)


if __name__ == "__main__":
    main()
