# SPDX-License-Identifier: MIT
"""Image builds: cold (nothing cached) and warm (the cached image is reused), and sizes.

    tox -e bench -- bench/image_build.py [--kernels bookworm,trixie,sid] [--warm-runs 5]

A cold build runs into a scratch cache directory, so the real cache is left alone; packages
come from the Debian mirror each time. A benchmark: it reports numbers only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from harness.images.build import build_image


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--kernels", default="bookworm,trixie,sid")
    parser.add_argument("--warm-runs", type=int, default=5)
    args = parser.parse_args()
    for name in args.kernels.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-cache-") as scratch:
            saved = os.environ.get("HARNESS_CACHE_DIR")
            os.environ["HARNESS_CACHE_DIR"] = scratch
            try:
                started = time.monotonic()
                image = build_image(name)
                cold = time.monotonic() - started
                warm = []
                for _ in range(args.warm_runs):
                    started = time.monotonic()
                    build_image(name)
                    warm.append(time.monotonic() - started)
            finally:
                if saved is None:
                    del os.environ["HARNESS_CACHE_DIR"]
                else:
                    os.environ["HARNESS_CACHE_DIR"] = saved
            sizes = image.manifest.sizes
            total = sum(sizes.values()) / 2**20
            print(
                f"{name:<9} {image.kernel_release:<24} cold {cold:6.1f} s   "
                f"warm median {statistics.median(warm) * 1000:6.1f} ms   "
                f"on disk {total:5.0f} MiB (rootfs {sizes.get('rootfs.img', 0) / 2**20:.0f}, "
                f"vmlinux {sizes.get('vmlinux', 0) / 2**20:.0f}, "
                f"initrd {sizes.get('initrd.img', 0) / 2**20:.1f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
