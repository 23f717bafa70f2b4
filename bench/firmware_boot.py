# SPDX-License-Identifier: MIT
"""Boot and restore times per firmware: direct kernel boot, UEFI (OVMF, shim, GRUB, the
image's signed kernel), and Secure Boot, until SSH answers with the VFIO modules loaded.

    tox -e bench -- bench/firmware_boot.py [--kernels bookworm] [--runs 3]

A benchmark: it reports numbers (median, min, max per kernel, firmware and way of starting),
it does not pass or fail on them.
"""

from __future__ import annotations

import argparse
import statistics

from harness.firmware import Firmware
from harness.images.build import BuiltImage, build_image
from harness.kmod.signing import mok_for
from harness.vm.accel import Accelerator, choose_accelerator
from harness.vm.saved_state import Fresh, start_vm


def one(image: BuiltImage, accel: Accelerator, firmware: Firmware, fresh: Fresh) -> float:
    mok = mok_for(firmware)
    with start_vm(image, accelerator=accel, fresh=fresh, firmware=firmware, mok=mok) as vm:
        if fresh != "auto":
            assert vm.times.how == ("boot" if fresh == "boot" else "restore")
        return vm.times.boot_to_ready_s


def summary(label: str, times: list[float]) -> str:
    return (
        f"{label:<32} median {statistics.median(times):6.2f} s  "
        f"min {min(times):6.2f}  max {max(times):6.2f}  (n={len(times)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--kernels", default="bookworm")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    accel = choose_accelerator()
    print(f"accelerator: {accel.name} ({accel.reason})", flush=True)
    for name in args.kernels.split(","):
        image = build_image(name)
        for firmware in Firmware:
            one(image, accel, firmware, "auto")  # makes the saved state if it is missing
            modes: tuple[tuple[Fresh, str], ...] = (("boot", "cold boot"), ("restore", "restore"))
            for fresh, what in modes:
                times = [one(image, accel, firmware, fresh) for _ in range(args.runs)]
                print(summary(f"{name} {firmware} {what}", times), flush=True)


if __name__ == "__main__":
    main()
