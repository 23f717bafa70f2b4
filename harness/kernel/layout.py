# SPDX-License-Identifier: MIT
"""Which kind of kernel a developer passed with --kernel, checked, and its cache fingerprint.

Three layouts are recognised:

  build-output  a directory with `bzImage` (or `vmlinuz`, `vmlinuz-*`, or `vmlinux`; also under
                `boot/`) and, optionally, the modules as `make modules_install
                INSTALL_MOD_PATH=DIR` installs them: DIR/lib/modules/<release> (or
                DIR/usr/lib/modules/<release>). Its `build` link, or DIR/build, is the headers tree.
  source-tree   a built kernel tree or O= build directory: Makefile, .config,
                include/config/kernel.release, arch/x86/boot/bzImage (or vmlinux) and, with
                CONFIG_MODULES, modules.order. The tree is its own build directory.
  image         a single bzImage or vmlinux with everything the guest needs built in.

The fingerprint stands for the files a cached build is made from, by name, size and
modification time (nanoseconds) rather than by content: hashing a module tree and a kernel on
every run would cost seconds, and every rebuild or reinstall changes the times. The path the
kernel was passed by is not part of it, so a copy made with `cp -a` shares the cache entry.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.kernel.config import order_entry_name, parse_config
from harness.kernel.image_format import image_kind, kernel_release

Layout = Literal["build-output", "source-tree", "image"]

COMPRESSED_NAMES = ("bzImage", "vmlinuz", "vmlinuz-*")
MODULES_ROOTS = ("lib/modules", "usr/lib/modules")
# Links make modules_install leaves in lib/modules/<release>: host paths, not modules.
HOST_LINKS = ("build", "source")
SOURCE_TREE_FILES = (".config", "include/config/kernel.release")
MODULE_LISTS = ("modules.order", "modules.builtin", "modules.builtin.modinfo")


class CustomKernelError(RuntimeError):
    """The kernel passed with --kernel cannot be used; the message says what to do about it."""


@dataclass(frozen=True)
class KernelSource:
    """A detected kernel, before anything is built from it. Paths are absolute."""

    path: Path
    layout: Layout
    image: Path  # the bzImage or vmlinux file
    release: str
    modules_dir: Path | None = None  # build-output: its lib/modules/<release>
    config: Path | None = None
    build_dir: Path | None = None
    modules_enabled: bool = False  # source-tree: CONFIG_MODULES=y, so modules get installed

    @property
    def label(self) -> str:
        """A short name for progress lines and the VM's name."""
        return "custom-" + safe_name(self.release)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)[:64]


def detect_kernel(path: Path) -> KernelSource:
    """Recognise the layout of `path` and check it is complete; CustomKernelError if not."""
    path = Path(os.path.abspath(path.expanduser()))
    if not path.exists():
        raise CustomKernelError(f"{path} does not exist: pass a kernel image, build or tree")
    if path.is_file():
        return KernelSource(path, "image", path, _release_of(path))
    if not path.is_dir():
        raise CustomKernelError(f"{path} is neither a file nor a directory")
    if (path / "Makefile").is_file() and any(
        (path / name).is_file() for name in ("Kconfig", ".config")
    ):
        return _source_tree(path)
    return _build_output(path)


def _release_of(image: Path) -> str:
    if image_kind(image) is None:
        raise CustomKernelError(
            f"{image} is neither an x86 bzImage nor an ELF vmlinux: pass "
            "arch/x86/boot/bzImage or vmlinux from your kernel build"
        )
    release = kernel_release(image)
    if not release:
        raise CustomKernelError(
            f"cannot read the kernel release from {image} (no version string in its header or "
            "banner): is it a complete x86_64 Linux kernel?"
        )
    return release


def _source_tree(tree: Path) -> KernelSource:
    for name in SOURCE_TREE_FILES:
        if not (tree / name).is_file():
            raise CustomKernelError(
                f"{tree} looks like a kernel source tree but has no {name}: configure and build "
                "it first (make olddefconfig && make -j$(nproc) bzImage modules)"
            )
    release = (tree / "include/config/kernel.release").read_text(encoding="utf-8").strip()
    image = next(
        (p for p in (tree / "arch/x86/boot/bzImage", tree / "vmlinux") if p.is_file()), None
    )
    if image is None:
        raise CustomKernelError(
            f"no arch/x86/boot/bzImage or vmlinux in {tree}: build the kernel (make bzImage)"
        )
    built = _release_of(image)
    if built != release:
        raise CustomKernelError(
            f"{image} is release {built} but include/config/kernel.release says {release}: the "
            "tree changed after the last build; run make again"
        )
    config = parse_config((tree / ".config").read_text(encoding="utf-8", errors="replace"))
    modules_enabled = config.get("MODULES") == "y"
    if modules_enabled and not (tree / "modules.order").is_file():
        raise CustomKernelError(
            f"{tree} has CONFIG_MODULES=y but no modules.order: build the modules (make modules)"
        )
    return KernelSource(
        tree, "source-tree", image, release, None, tree / ".config", tree, modules_enabled
    )


def _build_output(directory: Path) -> KernelSource:
    image = _kernel_file(directory)
    release = _release_of(image)
    modules_dir = _modules_dir(directory, release)
    build_dir = next(
        (
            p.resolve()
            for p in (modules_dir / "build" if modules_dir else None, directory / "build")
            if p is not None and p.is_dir()
        ),
        None,
    )
    config_candidates = [
        directory / ".config",
        directory / "config",
        directory / f"config-{release}",
        directory / f"boot/config-{release}",
    ]
    if modules_dir is not None:
        config_candidates.append(modules_dir / "config")  # Debian sid's layout
    if build_dir is not None:
        config_candidates.append(build_dir / ".config")
    config = next((c for c in config_candidates if c.is_file()), None)
    return KernelSource(directory, "build-output", image, release, modules_dir, config, build_dir)


def _kernel_file(directory: Path) -> Path:
    compressed = sorted(
        {p for d in (directory, directory / "boot") for n in COMPRESSED_NAMES for p in d.glob(n)}
    )
    compressed = [p for p in compressed if p.is_file()]
    if len(compressed) > 1:
        names = ", ".join(str(p.relative_to(directory)) for p in compressed)
        raise CustomKernelError(
            f"several kernels in {directory} ({names}): keep one, or pass the file itself"
        )
    if compressed:
        return compressed[0]
    for candidate in (directory / "vmlinux", directory / "boot/vmlinux"):
        if candidate.is_file():
            return candidate
    raise CustomKernelError(
        f"no bzImage or vmlinux in {directory}: copy your build's arch/x86/boot/bzImage there "
        "(with its modules in lib/modules/<release>), or pass the built source tree itself"
    )


def _modules_dir(directory: Path, release: str) -> Path | None:
    found = {
        p.name: p
        for root in MODULES_ROOTS
        if (directory / root).is_dir()
        for p in sorted((directory / root).iterdir())
        if p.is_dir()
    }
    if release in found:
        return found[release]
    if found:
        raise CustomKernelError(
            f"kernel release {release} but modules are for {', '.join(sorted(found))} (in "
            f"{directory}): install this build's modules (make modules_install "
            f"INSTALL_MOD_PATH={directory}) or pass the kernel they belong to"
        )
    return None


def fingerprint(source: KernelSource, salt: bytes) -> str:
    """`<release>-<hash>`: the hash covers `salt` (builder version, initrd init) and the inputs."""
    digest = hashlib.sha256(salt)
    digest.update(f"\0{source.layout}\0{source.release}\0".encode())
    # The kernel image and config by content: size and mtime alone collide when two builds of
    # the same size land within one timestamp tick (file times are jiffy-coarse); the many
    # module files keep the cheap size+mtime records.
    for path in (source.image, source.config):
        if path is not None:
            digest.update(_content_digest(path))
    for name, path in input_files(source):
        digest.update(stat_record(name, path))
    return f"{safe_name(source.release)}-{digest.hexdigest()[:20]}"


def _content_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def input_files(source: KernelSource) -> Iterator[tuple[str, Path]]:
    """(name, path) of every file the build reads, in a stable order."""
    base = source.path if source.path.is_dir() else source.path.parent
    fixed = [source.image, *([source.config] if source.config else [])]
    if source.layout == "source-tree":
        fixed += [source.path / "include/config/kernel.release"]
        if source.modules_enabled:
            fixed += [source.path / name for name in MODULE_LISTS]
    for path in fixed:
        yield _name(path, base), path
    if source.layout == "source-tree" and source.modules_enabled:
        order = (source.path / "modules.order").read_text(encoding="utf-8").split()
        for entry in order:
            ko = source.path / entry
            ko = ko.with_name(ko.name.removesuffix(".o") + ".ko") if entry.endswith(".o") else ko
            yield f"module:{order_entry_name(entry)}:{entry}", ko
    if source.modules_dir is not None:
        yield from _walk(source.modules_dir)


def _name(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _walk(modules_dir: Path) -> Iterator[tuple[str, Path]]:
    for directory, dirs, files in os.walk(modules_dir):
        relative = os.path.relpath(directory, modules_dir)
        skipped = HOST_LINKS if relative == "." else ()
        dirs[:] = sorted(d for d in dirs if d not in skipped)
        for name in sorted(f for f in files if f not in skipped):
            yield f"modules/{os.path.normpath(os.path.join(relative, name))}", Path(directory, name)


def stat_record(name: str, path: Path) -> bytes:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return f"{name}\0missing\n".encode()
    if path.is_symlink():
        return f"{name}\0link\0{os.readlink(path)}\n".encode()
    return f"{name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode()
