# SPDX-License-Identifier: MIT
"""The Debian packages each part of the harness needs on the host, and installing them.

Python dependencies come from pip (pyproject.toml); these are the system tools pip cannot
provide. Installing needs root; otherwise the exact apt-get command is printed instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable

# What each profile needs beyond a stock Debian system (which always has apt and dpkg-deb).
PROFILES: dict[str, tuple[str, ...]] = {
    # The UAPI layout test compiles a C program against kernel headers; the SSH tests run
    # OpenSSH's sshd and dropbear on 127.0.0.1 (openssh-server brings ssh-keygen, sftp-server);
    # the QMP and overlay tests run a guest-less QEMU and qemu-img.
    "unit": (
        "gcc",
        "libc6-dev",
        "openssh-server",
        "dropbear-bin",
        "qemu-system-x86",
        "qemu-utils",
        "kmod",  # depmod, for the custom-kernel modules-disk tests
        "make",  # the module builder's host-toolchain path (a user's own kernel tree)
        "cpio",  # lists the nested L2 initramfs we write (an independent newc reader)
    ),
    # Guest images (harness/vm): bootstrap, disk, kernel/module decompression, overlays, QEMU.
    "vm": (
        "mmdebstrap",
        "e2fsprogs",
        "kmod",  # depmod for a custom kernel's modules disk
        "zstd",
        "xz-utils",
        "qemu-utils",
        "qemu-system-x86",
        "debian-archive-keyring",
        "python3-venv",  # the installed-package tests make a venv of their own (ensurepip)
    ),
    # UEFI guests (harness/firmware): OVMF, the ESP's FAT filesystem written with mtools, and
    # debugfs to read the image's signed kernel out of its root disk.
    "firmware": (
        "ovmf",
        "dosfstools",
        "mtools",
        "e2fsprogs",
    ),
    # The HTML report is checked as a browser shows it (tests/unit/test_report_html.py), and
    # the LAVA job against LAVA's own schema (tests/unit/test_report_lava.py).
    "report": ("chromium", "lava-common"),
    # `run --coverage`: genhtml makes the coverage pages from our lcov tracefile (the line
    # counts themselves come from gcc's own gcov, with gcc).
    "coverage": ("lcov", "gcc"),
    # LAVA's dispatcher runs our job for real (tests/lava, `tox -e lava`); it writes the test
    # overlay into the image with libguestfs, and reads it back with debugfs.
    "lava": ("lava-dispatcher", "e2fsprogs"),
    # Kernels built from source (harness/kernel/build.py): kbuild's host tools, objtool's
    # libelf, sign-file's libssl, and ccache for rebuilds.
    "kernel": (
        "make",
        "gcc",
        "libc6-dev",
        "flex",
        "bison",
        "bc",
        "libelf-dev",
        "libssl-dev",
        "xz-utils",
        "ccache",
    ),
}


class HostDepsError(RuntimeError):
    """Missing packages that we could not (or were told not to) install."""


def missing_packages(packages: Iterable[str]) -> list[str]:
    """Packages dpkg does not report as installed."""
    absent = []
    for package in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or "install ok installed" not in result.stdout:
            absent.append(package)
    return absent


def install_command(packages: Iterable[str]) -> list[str]:
    return ["apt-get", "install", "-y", "--no-install-recommends", *packages]


def ensure(profiles: Iterable[str], *, install: bool = True) -> list[str]:
    """Make sure every package of `profiles` is present; return what was installed."""
    wanted: list[str] = []
    for profile in profiles:
        if profile not in PROFILES:
            raise HostDepsError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
        wanted.extend(p for p in PROFILES[profile] if p not in wanted)
    if shutil.which("dpkg-query") is None:
        raise HostDepsError("dpkg-query not found: the harness expects a Debian host")
    absent = missing_packages(wanted)
    if not absent:
        return []
    command = install_command(absent)
    if not install or os.geteuid() != 0:
        raise HostDepsError(
            f"missing host packages: {' '.join(absent)}\nInstall them as root with:\n  "
            + " ".join(command)
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    update = subprocess.run(["apt-get", "update"], env=env, check=False)
    result = subprocess.run(command, env=env, check=False)
    if update.returncode != 0 or result.returncode != 0:
        raise HostDepsError(
            f"apt-get could not install {' '.join(absent)}; check the apt sources and network"
        )
    return absent
