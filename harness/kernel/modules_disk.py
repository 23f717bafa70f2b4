# SPDX-License-Identifier: MIT
"""A custom kernel's modules as a read-only ext4 disk the guest mounts on lib/modules/<release>.

The modules are staged in a scratch tree laid out as STAGE/lib/modules/<release> (copied from a
build's install, with hard links where the file system allows, or installed there by the
kernel tree's own `make modules_install`), indexed with the host's `depmod -b STAGE`, and
written into a raw ext4 image by `mke2fs -d` (no loop mount, no root). The disk has no
journal: the guest only ever mounts it read-only.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from harness.images.rootfs import mke2fs, run_logged, tree_usage
from harness.kernel.layout import HOST_LINKS, CustomKernelError

MODULES_LABEL = "harness-modules"
MAKE_TIMEOUT_SECONDS = 1200
DEPMOD_TIMEOUT_SECONDS = 300
# depmod lives in /sbin, which a non-root PATH often lacks.
SBIN_DIRS = ("/usr/sbin", "/sbin")


def staged_modules_dir(stage: Path, release: str) -> Path:
    return stage / "lib/modules" / release


def prepare_stage(stage: Path) -> None:
    """STAGE/lib/modules, and usr/lib/modules pointing at it: whichever module directory this
    host's kmod and kbuild use (/lib/modules or /usr/lib/modules), both end up in one place."""
    (stage / "lib/modules").mkdir(parents=True, exist_ok=True)
    (stage / "usr/lib").mkdir(parents=True, exist_ok=True)
    link = stage / "usr/lib/modules"
    if not link.is_symlink():
        link.symlink_to("../../lib/modules")


def stage_modules(modules_dir: Path, release: str, stage: Path) -> Path:
    """Copy an installed lib/modules/<release> into the stage, minus its build/source links."""
    prepare_stage(stage)
    target = staged_modules_dir(stage, release)

    def skip_host_links(directory: str, names: list[str]) -> set[str]:
        return set(HOST_LINKS) & set(names) if Path(directory) == modules_dir else set()

    shutil.copytree(
        modules_dir, target, symlinks=True, ignore=skip_host_links, copy_function=_link_or_copy
    )
    return target


def _link_or_copy(source: str, dest: str) -> str:
    """A hard link for module files (the stage lives for one build); a copy for depmod's
    indexes, which it replaces, and across file systems."""
    if not os.path.basename(source).startswith("modules."):
        try:
            os.link(source, dest)
            return dest
        except OSError:
            pass
    return str(shutil.copy2(source, dest))


def install_modules(tree: Path, release: str, stage: Path, log: Path) -> Path:
    """`make modules_install` from a built tree into the stage, stripped of debug info."""
    prepare_stage(stage)
    argv = [
        "make",
        "-C",
        str(tree),
        f"-j{os.cpu_count() or 1}",
        "modules_install",
        f"INSTALL_MOD_PATH={stage}",
        # Debug info is for the host's gdb: it would make the disk many times larger.
        "INSTALL_MOD_STRIP=1",
    ]
    run_logged(
        argv,
        log,
        MAKE_TIMEOUT_SECONDS,
        f"make modules_install in {tree}",
        "Is the tree fully built (make modules)? make and binutils must be installed.",
    )
    target = staged_modules_dir(stage, release)
    if not target.is_dir():
        raise CustomKernelError(
            f"make modules_install in {tree} did not install lib/modules/{release}"
        )
    for name in HOST_LINKS:  # older kbuilds link back into the tree: no use in the guest
        if (target / name).is_symlink():
            (target / name).unlink()
    return target


def run_depmod(stage: Path, release: str, log: Path) -> None:
    """Write modules.dep and friends for the staged tree with the host's depmod."""
    depmod = shutil.which("depmod") or shutil.which("depmod", path=os.pathsep.join(SBIN_DIRS))
    if depmod is None:
        raise CustomKernelError(
            "depmod not found: install kmod on the host (vfio-harness setup --profile vm)"
        )
    run_logged(
        [depmod, "-b", str(stage), release],
        log,
        DEPMOD_TIMEOUT_SECONDS,
        f"depmod for {release}",
        "A module may be corrupt or compressed in a format this host's kmod cannot read.",
    )
    if not (staged_modules_dir(stage, release) / "modules.dep").is_file():
        raise CustomKernelError(f"depmod -b {stage} {release} wrote no modules.dep")


def disk_size_mib(used_bytes: int) -> int:
    """Room for the tree plus ext4's metadata; the image file is sparse anyway."""
    return max(8, math.ceil(used_bytes * 1.15 / (1 << 20)) + 8)


def make_modules_disk(modules_dir: Path, image: Path, log: Path) -> int:
    """Write `modules_dir`'s contents as the root of a new ext4 image; return its size in bytes."""
    used, inodes = tree_usage(modules_dir)
    return mke2fs(modules_dir, image, disk_size_mib(used), log, label=MODULES_LABEL,
                  inodes=inodes + 64, options=("-O", "^has_journal", "-m", "0"),
                  what="mke2fs of the modules disk")  # fmt: skip
