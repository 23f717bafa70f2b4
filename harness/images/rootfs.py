# SPDX-License-Identifier: MIT
"""The guest's root tree (mmdebstrap) and its disk (`mke2fs -d`), with no loop mounts.

mmdebstrap bootstraps the recipe's suite into a directory; the customize hook from
harness/vm/guest_init installs the harness init and makes the SSH host key inside it. The
directory then becomes a raw ext4 image with `mke2fs -t ext4 -d TREE`, which needs neither
root-only mounts nor a loop device.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.cache import cache_dir
from harness.core.progress import (
    LastTotals,
    Progress,
    clear_status,
    duration,
    heartbeat_every,
    heartbeat_line,
)
from harness.debian import DebianMirror
from harness.images.recipe import Recipe

# Docs, man pages and translations are dead weight in a test guest.
BASE_PATH_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    # The initrd is the harness's own: stop the kernel's postinst from building one.
    "/etc/kernel/postinst.d/initramfs-tools",
)
BASE_PATH_INCLUDES = ("/usr/share/doc/*/copyright",)
MMDEBSTRAP_TIMEOUT_SECONDS = 1200
MKE2FS_TIMEOUT_SECONDS = 600
LOG_TAIL_LINES = 20
MOUNTINFO = Path("/proc/self/mountinfo")


class RootfsError(RuntimeError):
    """mmdebstrap, mke2fs or the installed tree failed; the message says what to try."""


@dataclass(frozen=True)
class InstalledKernel:
    release: str
    vmlinuz: Path
    config: Path
    modules_dir: Path


def mmdebstrap_argv(
    recipe: Recipe, mirror: DebianMirror, tree: Path, hook: Path, guest_files: Path
) -> list[str]:
    """The mmdebstrap command line that bootstraps `recipe` into the directory `tree`."""
    argv = [
        "mmdebstrap",
        "--verbose",  # apt's and dpkg's lines in the log: the heartbeat counts packages set up
        f"--variant={recipe.variant}",
        "--include=" + ",".join(recipe.all_packages()),
        # sid's Release is often past its Valid-Until by the time it is used.
        '--aptopt=Acquire::Check-Valid-Until "false"',
        f"--keyring={mirror.keyring}",
    ]
    argv += [f"--dpkgopt=path-exclude={p}" for p in (*BASE_PATH_EXCLUDES, *recipe.path_exclude)]
    argv += [f"--dpkgopt=path-include={p}" for p in BASE_PATH_INCLUDES]
    argv.append(
        "--customize-hook=sh "
        + shlex.join([str(hook)])
        + ' "$1" '
        + shlex.join([str(guest_files), recipe.init])
    )
    source = f"deb [signed-by={mirror.keyring}] {mirror.uri} {recipe.suite} main"
    argv += [recipe.suite, str(tree), source]
    return argv


STEP_WIDTH = 60


class LogWatch:
    """While a logged command runs: every heartbeat, how many packages it has set up (of how
    many the last complete run of `job` did) and its last "I:" line (mmdebstrap's steps)."""

    def __init__(self, log: Path, what: str, job: str, progress: Progress) -> None:
        self.log, self.what, self.job, self.progress = log, what, job, progress
        self.totals = LastTotals(cache_dir("progress") / "totals.json")
        self.total = self.totals.get(job)
        self.started = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def count(self) -> tuple[int, str]:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return 0, ""
        step = next((line for line in reversed(lines) if line.startswith("I: ")), "")[3:]
        if len(step) > STEP_WIDTH:  # a hook's whole command line
            step = step[: STEP_WIDTH - 3] + "..."
        return sum(line.startswith("Setting up ") for line in lines), step

    def _beat(self) -> None:
        while not self._done.wait(heartbeat_every()):
            elapsed = time.monotonic() - self.started
            done, step = self.count()
            rest = f"{duration(elapsed)} elapsed" + (f"; {step}" if step else "")
            self.progress(
                heartbeat_line(self.what, done, self.total, elapsed, "packages set up", rest)
            )

    def __enter__(self) -> LogWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        clear_status()  # a failure's message starts on a line of its own

    def finished(self) -> None:
        """The command succeeded: its count is the next run's total."""
        done, _ = self.count()
        if done:
            self.totals.record(self.job, done)


def run_logged(
    argv: Sequence[str],
    log: Path,
    timeout: float,
    what: str,
    hint: str,
    *,
    watch: tuple[str, Progress] | None = None,
) -> None:
    """Run `argv` with its output in `log`; RootfsError with the log's tail on failure.
    `watch` (job, progress): heartbeat lines while it runs (LogWatch)."""
    if watch is not None:
        with LogWatch(log, what, *watch) as watcher:
            run_logged(argv, log, timeout, what, hint)
        watcher.finished()
        return
    env = dict(os.environ, LC_ALL="C.UTF-8", DEBIAN_FRONTEND="noninteractive")
    try:
        with log.open("ab") as out:
            out.write(f"$ {shlex.join(argv)}\n".encode())
            out.flush()
            result = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=timeout,
                check=False,
            )
    except FileNotFoundError as err:
        raise RootfsError(
            f"{argv[0]} not found: install the host packages with `vfio-harness setup` (profile vm)"
        ) from err
    except subprocess.TimeoutExpired as err:
        raise RootfsError(f"{what} timed out after {timeout:.0f} s; log: {log}\n{hint}") from err
    if result.returncode != 0:
        raise RootfsError(
            f"{what} failed (exit {result.returncode}); log: {log}\n{log_tail(log)}\n{hint}"
        )


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "  | (no log)"
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(f"  | {line}" for line in kept)


def installed_kernel(tree: Path) -> InstalledKernel:
    """The one kernel in the tree: /boot (bookworm, trixie) or /usr/lib/modules/<r>/ (sid)."""
    modules_root = tree / "usr/lib/modules"
    releases = sorted(p.name for p in modules_root.iterdir()) if modules_root.is_dir() else []
    releases = [r for r in releases if (modules_root / r / "modules.dep").exists()]
    if len(releases) != 1:
        raise RootfsError(
            f"expected one kernel under {modules_root}, found {releases or 'none'}: does the "
            "recipe's kernel_package install exactly one kernel?"
        )
    release = releases[0]
    modules_dir = modules_root / release

    def first(*candidates: Path) -> Path:
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise RootfsError(f"kernel {release}: none of {[str(c) for c in candidates]} exists")

    return InstalledKernel(
        release=release,
        vmlinuz=first(tree / f"boot/vmlinuz-{release}", modules_dir / "vmlinuz"),
        config=first(tree / f"boot/config-{release}", modules_dir / "config"),
        modules_dir=modules_dir,
    )


def tree_usage(tree: Path) -> tuple[int, int]:
    """(bytes allocated, number of inodes) of a directory tree, without following links."""
    total = 0
    inodes = 0
    for directory, dirnames, filenames in os.walk(tree):
        for name in (*dirnames, *filenames):
            inodes += 1
            total += os.lstat(os.path.join(directory, name)).st_blocks * 512
    return total, inodes


def disk_geometry(used_bytes: int, inodes: int, headroom_mib: int) -> tuple[int, int]:
    """(size in MiB, inode count) for an ext4 disk holding the tree plus headroom."""
    mib = 1 << 20
    # ~6% ext4 metadata and journal, rounded up to 64 MiB steps.
    size = math.ceil(used_bytes * 1.06 / mib) + 64 + headroom_mib
    size = math.ceil(size / 64) * 64
    return size, max(inodes * 2, 65536)


def make_ext4(tree: Path, image: Path, headroom_mib: int, log: Path) -> int:
    """Write `tree` into a new raw ext4 image; return its size in bytes."""
    used, inodes = tree_usage(tree)
    size_mib, inode_count = disk_geometry(used, inodes, headroom_mib)
    return mke2fs(tree, image, size_mib, log, label="harness-root", inodes=inode_count)


def mke2fs(
    tree: Path,
    image: Path,
    size_mib: int,
    log: Path,
    *,
    label: str,
    inodes: int,
    options: Sequence[str] = (),
    what: str = "mke2fs",
) -> int:
    """A new raw ext4 image of `size_mib` holding `tree` as its root (no loop mount, no root:
    `mke2fs -d`); its size in bytes."""
    argv = ["mke2fs", "-q", "-F", "-t", "ext4", *options, "-L", label, "-N", str(inodes)]
    argv += ["-d", str(tree), str(image), f"{size_mib}M"]
    run_logged(
        argv,
        log,
        MKE2FS_TIMEOUT_SECONDS,
        what,
        "mke2fs -d needs e2fsprogs >= 1.43 and space in the cache directory.",
    )
    return size_mib << 20


def mounts_under(path: Path, mountinfo: Path = MOUNTINFO) -> list[Path]:
    """Mount points inside `path`, deepest first (from /proc/self/mountinfo)."""
    try:
        lines = mountinfo.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    prefix = str(path.resolve()) + "/"
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            if point.startswith(prefix):
                points.append(Path(point))
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def remove_tree(path: Path, mountinfo: Path = MOUNTINFO) -> None:
    """Delete a (possibly half-built) tree, never through a mount left by a killed mmdebstrap.

    mmdebstrap bind-mounts the host's /sys and /dev nodes into the tree while it works; if it
    was killed, deleting the tree blindly would recurse into them.
    """
    for point in mounts_under(path, mountinfo):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
    left = mounts_under(path, mountinfo)
    if left:
        raise RootfsError(
            f"cannot delete {path}: {', '.join(map(str, left))} still mounted; unmount by hand "
            "(umount -R) and run again"
        )
    shutil.rmtree(path, ignore_errors=True)
