# SPDX-License-Identifier: MIT
"""Bring your own kernel: what QEMU boots (kernel, initrd, extra disks) as one KernelBundle.

An image's own Debian kernel is a bundle as it stands (`bundle_for_image`). A developer's
kernel (`prepare_custom_kernel`: a build output directory, a built source tree, or a single
image; see layout.py) is checked, then built once into
`<cache>/kernels/<release>-<hash>/`:

  vmlinux or bzImage  the uncompressed kernel with its PVH entry when it has one (saves the
                      guest ~3.7 s of decompression under TCG), else the bzImage
  initrd.img          the harness initrd with this kernel's disk modules (none if built in)
  modules.img         its lib/modules/<release>, depmod'ed, as a read-only ext4 disk; the
                      initrd mounts it on the root's lib/modules/<release> (harness.modules=)
  config              its .config (from the build, or embedded with CONFIG_IKCONFIG), if any
  bundle.json         written last: the directory is complete when it exists

The hash is layout.fingerprint: sizes and mtimes of the kernel, config and modules, the
builder version and the initrd's init. The build happens in a hidden scratch directory renamed
into place, under a per-key fcntl lock, as for images. The initrd's static busybox comes from
Debian's busybox-static (bookworm); it is not part of the key.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.cache import cache_dir
from harness.core.cached_build import cached_build, prune
from harness.core.progress import Progress, phase, stderr_progress
from harness.core.records import RecordError, read_record, write_record
from harness.debian import AptError, MirrorNotFoundError, PackageUnpackError, unpacked_package
from harness.images.build import BuiltImage
from harness.images.initrd import InitrdError, build_initrd, init_script
from harness.images.rootfs import RootfsError, remove_tree
from harness.images.vmlinux import KernelExtractError, elf_problem, extract_vmlinux
from harness.kernel.config import ModuleIndex, builtin_drivers, kernel_problems, parse_config
from harness.kernel.image_format import embedded_config, has_pvh_entry, image_kind
from harness.kernel.layout import CustomKernelError, KernelSource, detect_kernel, fingerprint
from harness.kernel.modules_disk import (
    install_modules,
    make_modules_disk,
    run_depmod,
    stage_modules,
)

# Bump when the builder changes what it produces for the same kernel.
KERNEL_BUILDER_VERSION = 2
BUNDLE_FILE = "bundle.json"
KEEP_BUNDLES_PER_RELEASE = 2
BUNDLE_FORMAT = 1
MODULES_PARAM = "harness.modules"
# The first extra disk: boot() attaches extra_disks right after the root disk (/dev/vda).
MODULES_DEVICE = "/dev/vdb"
BUSYBOX_PACKAGE = "busybox-static"
BUSYBOX_SUITE = "bookworm"

__all__ = [
    "CustomKernelError",
    "KernelBundle",
    "bundle_for_image",
    "prepare_custom_kernel",
]


@dataclass(frozen=True)
class KernelBundle:
    """Everything QEMU needs to boot one kernel on an image's root disk."""

    label: str  # short name for progress lines and the VM's name
    kernel: Path  # QEMU's -kernel: a vmlinux with a PVH entry, else a bzImage
    initrd: Path | None
    extra_disks: tuple[Path, ...]  # read-only raw disks, attached after the root disk in order
    release: str  # what `uname -r` says in the guest
    build_dir: Path | None  # headers/build tree for out-of-tree modules, if known
    config: Path | None
    # key=value for the kernel command line; left out of the hash (a dict is not hashable)
    kernel_params: Mapping[str, str] = field(hash=False)


def bundle_for_image(image: BuiltImage) -> KernelBundle:
    """The image's own Debian kernel (its headers live in the image's build chroot)."""
    return KernelBundle(
        label=image.manifest.name,
        kernel=image.vmlinux,
        initrd=image.initrd,
        extra_disks=(),
        release=image.kernel_release,
        build_dir=None,
        config=image.kernel_config,
        kernel_params={},
    )


@dataclass(frozen=True)
class BundleRecord:
    """bundle.json: what a finished kernel directory holds (file names are relative)."""

    key: str
    release: str
    kernel: str  # "vmlinux" or "bzImage"
    initrd: str
    modules_disk: str | None
    config: str | None
    initrd_modules: tuple[str, ...]
    sizes: dict[str, int]
    build_seconds: float
    format: int = BUNDLE_FORMAT

    def write(self, directory: Path) -> None:
        write_record(self, directory / BUNDLE_FILE)

    @classmethod
    def read(cls, directory: Path) -> BundleRecord | None:
        """The record, or None when missing or from another builder format (rebuilt then)."""
        try:
            return read_record(cls, directory / BUNDLE_FILE, fmt=BUNDLE_FORMAT, redo="rebuilt")
        except RecordError:
            return None


def kernels_root() -> Path:
    return cache_dir("kernels")


def build_salt() -> bytes:
    """What the key covers besides the kernel's own files."""
    init = hashlib.sha256(init_script()).hexdigest()
    return f"kernel-builder-{KERNEL_BUILDER_VERSION}\0initrd-init-{init}".encode()


def prepare_custom_kernel(
    path: Path,
    progress: Progress = stderr_progress,
    *,
    busybox: Path | None = None,
    rebuild: bool = False,
) -> KernelBundle:
    """The bundle of the kernel at `path`, built into the cache unless it is there already.

    `busybox` is the static busybox for the initrd (default: Debian's busybox-static).
    CustomKernelError says what is wrong with the kernel, or which build step failed.
    """
    source = detect_kernel(path)
    key = fingerprint(source, build_salt())

    def build(scratch: Path) -> BundleRecord:
        return _build(source, key, scratch, busybox, progress)

    record = cached_build(kernels_root() / key, build, BundleRecord.read, rebuild=rebuild,
                          remove=remove_tree)  # fmt: skip
    if record.how == "another":
        progress(f"{source.label}: prepared by another worker: {record.path}")
    if record.how == "built":
        candidates = bundles_of(kernels_root(), record.value.release)
        for old in prune(candidates, KEEP_BUNDLES_PER_RELEASE, current=record.path,
                         remove=remove_tree):  # fmt: skip
            progress(f"{source.label}: removed the superseded bundle {old.name}")
    return _bundle(source, record.path, record.value)


def bundles_of(root: Path, release: str) -> list[tuple[float, Path]]:
    """Bundles of kernel `release`, with their build time: each rebuild of a developer's tree
    makes a new one (~100 MB), and only the latest few are booted again."""
    same: list[tuple[float, Path]] = []
    for record_file in root.glob(f"*/{BUNDLE_FILE}"):
        record = BundleRecord.read(record_file.parent)
        if record is not None and record.release == release:
            same.append((record_file.stat().st_mtime, record_file.parent))
    return same


def _bundle(source: KernelSource, directory: Path, record: BundleRecord) -> KernelBundle:
    disks = (directory / record.modules_disk,) if record.modules_disk else ()
    return KernelBundle(
        label=source.label,
        kernel=directory / record.kernel,
        initrd=directory / record.initrd,
        extra_disks=disks,
        release=record.release,
        build_dir=source.build_dir,
        config=directory / record.config if record.config else None,
        kernel_params=_debug_params(directory / record.config if record.config else None)
        | ({MODULES_PARAM: MODULES_DEVICE} if disks else {}),
    )


def _debug_params(config: Path | None) -> dict[str, str]:
    """KASAN reports only its first bug unless told otherwise; a suite wants every one."""
    if config is None or not config.is_file():
        return {}
    settings = parse_config(config.read_text(encoding="utf-8", errors="replace"))
    return {"kasan_multi_shot": "1"} if settings.get("KASAN") == "y" else {}


def _build(
    source: KernelSource, key: str, scratch: Path, busybox: Path | None, progress: Progress
) -> BundleRecord:
    started = time.monotonic()
    work = scratch / "work"
    work.mkdir()
    # Outside the scratch directory, so that it outlives a failed build; removed on success.
    log = scratch.parent / f"{key}.log"
    log.unlink(missing_ok=True)
    try:
        with phase(progress, source.label, "kernel"):
            kernel, uncompressed = _kernel(source, scratch, work, progress)
        config_text = _config_text(source, uncompressed)
        config = parse_config(config_text) if config_text is not None else None
        index = _module_index(source)
        _check(source, config, index, progress)
        if config_text is not None:
            (scratch / "config").write_text(config_text, encoding="utf-8")
        staged = None
        if index is not None:
            with phase(progress, source.label, "modules (depmod)"):
                staged = _stage(source, work / "stage", log)
        with phase(progress, source.label, "initrd"):
            initrd_modules = build_initrd(
                busybox or _debian_busybox(),
                staged,
                scratch / "initrd.img",
                builtin=builtin_drivers(config, index),
            )
        if staged is not None:
            with phase(progress, source.label, "modules disk"):
                make_modules_disk(staged, scratch / "modules.img", log)
    except CustomKernelError as err:
        if not log.exists():  # a check of the kernel itself: the message says it all
            raise
        raise CustomKernelError(f"{err}\nLog: {log}") from err
    except (
        RootfsError,
        InitrdError,
        KernelExtractError,
        AptError,
        MirrorNotFoundError,
        PackageUnpackError,
        OSError,
    ) as err:
        raise CustomKernelError(
            f"preparing the kernel at {source.path} ({key}) failed: {err}"
        ) from err
    remove_tree(work)
    log.unlink(missing_ok=True)
    files = [kernel, "initrd.img", *(["modules.img"] if staged else [])]
    files += ["config"] if config_text is not None else []
    record = BundleRecord(
        key=key,
        release=source.release,
        kernel=kernel,
        initrd="initrd.img",
        modules_disk="modules.img" if staged else None,
        config="config" if config_text is not None else None,
        initrd_modules=tuple(initrd_modules),
        sizes={name: (scratch / name).stat().st_blocks * 512 for name in files},
        build_seconds=round(time.monotonic() - started, 1),
    )
    record.write(scratch)
    progress(f"{source.label}: prepared {key} in {record.build_seconds:.1f} s ({kernel})")
    return record


def _kernel(
    source: KernelSource, scratch: Path, work: Path, progress: Progress
) -> tuple[str, Path | None]:
    """(file name in scratch, uncompressed ELF kernel if there is one) for QEMU's -kernel."""
    if image_kind(source.image) == "elf":
        with source.image.open("rb") as stream:
            problem = elf_problem(stream.read(64))
        if problem is not None:
            raise CustomKernelError(f"{source.image}: {problem}; pass an x86_64 kernel")
        if not has_pvh_entry(source.image):
            raise CustomKernelError(
                f"{source.image} has no PVH entry note (CONFIG_PVH is off), so QEMU cannot boot "
                "it uncompressed: enable CONFIG_PVH, or pass the bzImage"
            )
        shutil.copyfile(source.image, scratch / "vmlinux")
        return "vmlinux", scratch / "vmlinux"
    uncompressed: Path | None = work / "vmlinux"
    try:
        extract_vmlinux(source.image, work / "vmlinux")
    except KernelExtractError as err:
        progress(f"{source.label}: {str(err).splitlines()[0]}; booting the bzImage instead")
        uncompressed = None
    if uncompressed is not None and has_pvh_entry(uncompressed):
        unsafe = pvh_unsafe_reason(_config_text(source, uncompressed))
        if unsafe is None:
            uncompressed = uncompressed.replace(scratch / "vmlinux")
            return "vmlinux", uncompressed
        progress(f"{source.label}: {unsafe}: booting the bzImage instead")
    elif uncompressed is not None:
        progress(f"{source.label}: no PVH entry (CONFIG_PVH off): booting the bzImage instead")
    shutil.copyfile(source.image, scratch / "bzImage")  # decompressing costs ~3.7 s under TCG
    return "bzImage", uncompressed


def pvh_unsafe_reason(config_text: str | None) -> str | None:
    """Why the kernel must not be entered through its PVH entry, or None.

    6.12's xen_prepare_pvh (the PVH entry's first C code, before the KASAN shadow exists)
    compares the hypervisor CPUID signature with __builtin_memcmp; built with -Os
    (CC_OPTIMIZE_FOR_SIZE, tinyconfig's choice) gcc 12 emits a call to memcmp, which KASAN
    instruments: the guest page-faults on the shadow, triple-faults before printing anything
    and QEMU exits 0. The bzImage's own entry sets the shadow up first.
    """
    if config_text is None:
        return None
    config = parse_config(config_text)
    if config.get("KASAN") == "y" and config.get("CC_OPTIMIZE_FOR_SIZE") == "y":
        return "KASAN with -Os faults on the PVH entry (instrumented memcmp before the shadow)"
    return None


def _config_text(source: KernelSource, uncompressed: Path | None) -> str | None:
    if source.config is not None:
        return source.config.read_text(encoding="utf-8", errors="replace")
    return embedded_config(uncompressed) if uncompressed is not None else None


def _module_index(source: KernelSource) -> ModuleIndex | None:
    """The kernel's modules, None when it has none to install."""
    if source.modules_dir is not None:
        return ModuleIndex.of_tree(source.modules_dir)
    if source.layout == "source-tree" and source.modules_enabled:
        return ModuleIndex.of_source_tree(source.path)
    return None


def _check(
    source: KernelSource,
    config: Mapping[str, str] | None,
    index: ModuleIndex | None,
    progress: Progress,
) -> None:
    if config is None and index is None:
        progress(
            f"{source.label}: no .config and no modules: cannot check that virtio, ext4 and "
            "VFIO are built in (add CONFIG_IKCONFIG=y to make the kernel carry its config)"
        )
    problems = kernel_problems(config, index)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise CustomKernelError(
            f"the kernel at {source.path} ({source.release}) cannot run the harness guest:\n"
            f"{listed}"
        )


def _stage(source: KernelSource, stage: Path, log: Path) -> Path:
    """The kernel's lib/modules/<release> in the stage, with modules.dep."""
    if source.modules_dir is not None:
        staged = stage_modules(source.modules_dir, source.release, stage)
    else:
        staged = install_modules(source.path, source.release, stage, log)
    run_depmod(stage, source.release, log)
    return staged


def _debian_busybox() -> Path:
    busybox = unpacked_package(BUSYBOX_PACKAGE, BUSYBOX_SUITE) / "bin/busybox"
    if not busybox.is_file():
        raise CustomKernelError(f"{BUSYBOX_PACKAGE} from {BUSYBOX_SUITE} has no {busybox}")
    return busybox
