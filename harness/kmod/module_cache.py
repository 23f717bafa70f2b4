# SPDX-License-Identifier: MIT
"""The reference vendor driver (kmod/) built once per source and guest kernel, and cached.

    ko = build_vendor_module(build_image("trixie"))    # .../vfio_harness_mdev.ko

An entry `<cache>/modules/vendor/<release>-<hash>/` holds the .ko, build.log and record.json.
The hash covers every file of kmod/ (paths and contents, kbuild output left out, as when the
builder stages a copy), the build environment (its key and compiler) and the make flags, so an
unchanged source is never rebuilt and any change is. Builds use W=1, and the module must be
warning-free: a build with warnings is cached like any other (the same source would warn
again) and reported as VendorModuleError on every request, with its warnings and log.
Entries appear by one rename of a finished build under a per-key lock; the newest
KEEP_PER_RELEASE per kernel release are kept.

Debian image kernels build in their chroot (build_vendor_module); kernels built from source
build on the host against their build tree (harness.kmod.tree_module). Both go through
cached_vendor_module with a ModuleTarget that says what identifies the kernel and how to run
make for it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.cache import cache_dir
from harness.core.cached_build import cached_build, input_key, prune
from harness.core.progress import Progress, stderr_progress
from harness.core.records import read_record, write_record
from harness.core.resources import KMOD
from harness.images.build import BuiltImage
from harness.kmod.build_env import build_env_for
from harness.kmod.builder import (
    BUILD_OUTPUT,
    LOG_NAME,
    ModuleBuild,
    ModuleBuildError,
    build_module,
)

MODULE_CACHE_VERSION = 1
MODULE_FILE = "vfio_harness_mdev.ko"
RECORD_NAME = "record.json"
KEEP_PER_RELEASE = 3


class VendorModuleError(RuntimeError):
    """The vendor module did not build, or built with warnings; the message says which."""


@dataclass(frozen=True)
class VendorModuleRecord:
    """record.json: what was built from what, and what the compiler said."""

    key: str
    source_digest: str
    env_key: str
    compiler: str
    kernel_release: str
    modules: tuple[str, ...]  # .ko file names
    warnings: tuple[str, ...]
    modpost_warnings: tuple[str, ...]
    build_seconds: float
    built_at: float  # time.time() when it finished
    format: int = MODULE_CACHE_VERSION

    def write(self, directory: Path) -> None:
        write_record(self, directory / RECORD_NAME)

    @classmethod
    def read(cls, directory: Path) -> VendorModuleRecord:
        return read_record(cls, directory / RECORD_NAME, fmt=MODULE_CACHE_VERSION,
                           redo=f"delete {directory} to rebuild the module")  # fmt: skip


def kmod_dir() -> Path:
    """Our driver's source: $HARNESS_KMOD_SRC, the installed package's copy or the checkout's
    kmod/ (harness.core.resources)."""
    return KMOD.path(VendorModuleError)


def _is_build_output(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in BUILD_OUTPUT)


def source_digest(source: Path) -> str:
    """sha256 of every file under `source`: relative paths and contents, in sorted order."""
    digest = hashlib.sha256()
    for directory, subdirs, files in os.walk(source):
        subdirs[:] = sorted(d for d in subdirs if not _is_build_output(d))
        for name in sorted(f for f in files if not _is_build_output(f)):
            path = Path(directory) / name
            relative = path.relative_to(source).as_posix()
            digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def vendor_module_key(
    source: str, env_key: str, compiler: str, release: str, *, faults: bool = False
) -> str:
    """`<release>-<hash>`: the kernel in the name, everything that changes the .ko in the hash
    (a fault-injection build is a different module, and says so in its name)."""
    settings: dict[str, object] = {
        "version": MODULE_CACHE_VERSION,
        "source": source,
        "env": env_key,
        "compiler": compiler,
        "extra_warnings": True,  # W=1
    }
    if faults:
        settings["make_args"] = list(FAULTS_MAKE_ARGS)
    return f"{release}-{'faults-' if faults else ''}{input_key(settings)}"


# The test build of kmod/ with the deliberate bugs of kmod/faults.h.
FAULTS_MAKE_ARGS = ("HMDEV_FAULTS=1",)


def modules_root(source: Path | None = None) -> Path:
    """Our driver's builds, or those of the driver source `source` (--vendor-src) in a folder
    of its own: KEEP_PER_RELEASE counts per folder, so one never evicts the other's."""
    if source is None:
        return cache_dir("modules", "vendor")
    return cache_dir("modules", "src-" + _UNSAFE_IN_NAME.sub("_", source.resolve().name))


_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9_.+-]")


# Builds `source` into `dest` with W=1 and the given extra make arguments.
BuildFn = Callable[[Path, Path, tuple[str, ...], Progress], ModuleBuild]


@dataclass(frozen=True)
class ModuleTarget:
    """A kernel to build kmod/ for: what identifies it in the key, and how to run make."""

    kernel_release: str
    env_key: str  # the build environment's identity: an image chroot's key, a tree's hash
    compiler: str  # "x86_64-linux-gnu-gcc-12 12.2.0", or the host gcc's version line
    build: BuildFn


def build_vendor_module(
    image: BuiltImage,
    progress: Progress = stderr_progress,
    *,
    source: Path | None = None,
    faults: bool = False,
) -> Path:
    """The .ko of kmod/ (or `source`) for `image`'s kernel: cached, else built with W=1.

    `faults` builds the test variant with the deliberate bugs of kmod/faults.h, switched on
    by its `fault` module parameter. Raises VendorModuleError if it does not build or builds
    with any warning.
    """
    env = build_env_for(image, progress=progress)

    def build(src: Path, dest: Path, make_args: tuple[str, ...], log: Progress) -> ModuleBuild:
        return build_module(
            src, env, dest=dest, extra_warnings=True, extra_make_args=make_args, progress=log
        )

    target = ModuleTarget(
        kernel_release=env.kernel_release,
        env_key=env.manifest.key,
        compiler=f"{env.compiler} {env.gcc_version}",
        build=build,
    )
    return cached_vendor_module(target, progress, source=source, faults=faults)


def cached_vendor_module(
    target: ModuleTarget,
    progress: Progress = stderr_progress,
    *,
    source: Path | None = None,
    faults: bool = False,
) -> Path:
    """The .ko of kmod/ (or of the driver source `source`) for `target`: from the cache, else
    built there. Our module must build without a warning; another driver's warnings are shown
    (they are its authors' to fix) and its module is loaded all the same."""
    root = modules_root(source)
    source = source or kmod_dir()
    # A snapshot, so the digest is of exactly what gets built even if kmod/ is being edited.
    with tempfile.TemporaryDirectory(prefix="kmod-snapshot-") as scratch:
        snapshot = Path(scratch) / source.resolve().name
        shutil.copytree(source, snapshot, ignore=shutil.ignore_patterns(*BUILD_OUTPUT))
        digest = source_digest(snapshot)
        key = vendor_module_key(
            digest, target.env_key, target.compiler, target.kernel_release, faults=faults
        )
        make_args = FAULTS_MAKE_ARGS if faults else ()

        def build(scratch: Path) -> VendorModuleRecord:
            return _build_entry(snapshot, digest, target, scratch, key, progress, make_args)

        built = cached_build(root / key, build, _read_record)
    entry = built.path
    what = "built" if built.how == "built" else "cached"
    if built.how == "built":
        prune(_entries_of(root, target.kernel_release), KEEP_PER_RELEASE, current=entry)
    record = built.value
    module = module_to_load(record.modules, source)
    if module == MODULE_FILE:
        _check_warning_free(record, entry)
    elif record.warnings or record.modpost_warnings:
        count = len(record.warnings) + len(record.modpost_warnings)
        progress(f"{module} for {record.kernel_release}: {count} warning(s) with W=1, not ours "
                 f"to fix, so not fatal: {entry / LOG_NAME}")  # fmt: skip
    progress(f"{module} for {record.kernel_release}: {what} ({entry})")
    return entry / module


def module_to_load(built: Sequence[str], source: Path) -> str:
    """Which of the .ko files a build made gets loaded: ours, else the only one there is."""
    if MODULE_FILE in built:
        return MODULE_FILE
    if len(built) == 1:
        return built[0]
    raise VendorModuleError(
        f"{source} built {', '.join(built) or 'no module'}: the harness loads one driver "
        f"module; build the others into it, or load them yourself and pass --vendor-module"
    )


def _read_record(entry: Path) -> VendorModuleRecord | None:
    if not (entry / RECORD_NAME).is_file():
        return None
    return VendorModuleRecord.read(entry)


def _build_entry(
    source: Path,
    digest: str,
    target: ModuleTarget,
    scratch: Path,
    key: str,
    progress: Progress,
    make_args: tuple[str, ...] = (),
) -> VendorModuleRecord:
    release = target.kernel_release
    try:
        built = target.build(source, scratch, make_args, progress)
    except ModuleBuildError as err:
        raise VendorModuleError(f"{source.name}/ does not build for {release}: {err}") from None
    names = tuple(m.name for m in built.modules)
    module_to_load(names, source)
    record = VendorModuleRecord(
        key=key,
        source_digest=digest,
        env_key=target.env_key,
        compiler=target.compiler,
        kernel_release=release,
        modules=names,
        warnings=built.warnings,
        modpost_warnings=built.modpost_warnings,
        build_seconds=built.seconds,
        built_at=time.time(),
    )
    record.write(scratch)
    return record


def _check_warning_free(record: VendorModuleRecord, entry: Path) -> None:
    found = (*record.warnings, *record.modpost_warnings)
    if not found:
        return
    shown = "\n".join(f"  | {line}" for line in found)
    raise VendorModuleError(
        f"kmod/ built for {record.kernel_release} ({record.compiler}, W=1) with "
        f"{len(found)} warning{'' if len(found) == 1 else 's'}; the module must be "
        f"warning-free:\n{shown}\nFull log: {entry / LOG_NAME}"
    )


def _entries_of(root: Path, release: str) -> list[tuple[float, Path]]:
    """Builds of `release` in `root` (older states of the source), with their build time."""
    entries = []
    for directory in root.glob(f"{release}-*"):
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            entries.append((VendorModuleRecord.read(directory).built_at, directory))
    return entries


__all__ = [
    "MODULE_FILE",
    "ModuleTarget",
    "VendorModuleError",
    "VendorModuleRecord",
    "build_vendor_module",
    "cached_vendor_module",
    "kmod_dir",
    "source_digest",
    "vendor_module_key",
]
