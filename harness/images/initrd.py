# SPDX-License-Identifier: MIT
"""The guest's tiny initrd: static busybox, the kernel's disk modules, an /init.

Debian kernels have virtio_pci, virtio_blk and ext4 as modules, so the kernel cannot mount the
root disk by itself. The initrd loads just those (with their dependencies, from modules.dep,
decompressed on the host so busybox's insmod needs no XZ/zstd support), mounts /dev/vda and
switch_roots to the guest init. It is an uncompressed newc cpio of a few MB: the kernel would
spend longer decompressing it under TCG than QEMU spends loading it.

The same builder serves any kernel: an image's Debian kernel or a developer's own, whose
modules dir may be missing altogether (everything built in) and whose built-in drivers, per
modules.builtin or its .config, are skipped. The init also mounts a custom kernel's modules
disk (harness.modules=DEV) on the root's lib/modules/<release>.
"""

from __future__ import annotations

import gzip
import lzma
import subprocess
from collections.abc import Collection, Iterable, Sequence
from importlib import resources
from pathlib import Path

from harness.core import cpio

# Loaded in this order (dependencies first); missing *and* not built in is an error.
REQUIRED_MODULES = ("virtio_pci", "virtio_blk", "ext4")
# ext4 asks the crypto API for crc32c at mount time; loaded when it is a module.
OPTIONAL_MODULES = ("crc32c_generic",)
MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
MODULES_LIST = "etc/modules.load"
INIT_RESOURCE = "initrd_init.sh"


class InitrdError(RuntimeError):
    """The kernel's modules directory lacks something the initrd needs."""


def module_name(path: str) -> str:
    """`kernel/fs/ext4/ext4.ko.xz` -> `ext4`; the kernel treats '-' and '_' alike."""
    base = path.rsplit("/", 1)[-1]
    for suffix in MODULE_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep as {name: (relative path, [dependency paths])}."""
    table: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        target, deps = line.split(":", 1)
        table[module_name(target.strip())] = (target.strip(), deps.split())
    return table


def builtin_modules(text: str) -> set[str]:
    return {module_name(line.strip()) for line in text.splitlines() if line.strip()}


def resolve_modules(
    modules_dir: Path | None,
    required: Sequence[str] = REQUIRED_MODULES,
    optional: Sequence[str] = OPTIONAL_MODULES,
    *,
    builtin: Collection[str] = (),
) -> list[str]:
    """Relative paths of the wanted modules and their dependencies, in load order.

    `modules_dir` None: a kernel without modules, which must have every required one in
    `builtin` (names the caller knows are built in, e.g. from the kernel's .config).
    """
    table: dict[str, tuple[str, list[str]]] = {}
    built_in = {name.replace("-", "_") for name in builtin}
    where = "the kernel's modules (it has none)"
    if modules_dir is not None:
        dep_file = modules_dir / "modules.dep"
        where = str(dep_file)
        try:
            table = parse_modules_dep(dep_file.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise InitrdError(
                f"{dep_file} is missing: run depmod for this kernel (in the image's chroot)"
            ) from err
        builtin_file = modules_dir / "modules.builtin"
        if builtin_file.exists():
            built_in |= builtin_modules(builtin_file.read_text())
    order: list[str] = []
    for wanted in [*required, *optional]:
        name = wanted.replace("-", "_")
        if name in table:
            _add_with_deps(table[name][0], table, order)
        elif name not in built_in and wanted in required:
            raise InitrdError(
                f"module {wanted} is neither in {where} nor built in: the guest could not "
                "mount its disk. Does the kernel package ship it (see the recipe's "
                "path_exclude), or was it left out of the kernel's configuration?"
            )
    return order


def _add_with_deps(path: str, table: dict[str, tuple[str, list[str]]], order: list[str]) -> None:
    if path in order:
        return
    # modules.dep lists a module's dependencies so that loading them last-to-first works.
    deps = table.get(module_name(path), (path, []))[1]
    for dep in reversed(deps):
        _add_with_deps(dep, table, order)
    order.append(path)


def read_module(path: Path) -> bytes:
    """A module file's ELF bytes, decompressed by its suffix."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        result = subprocess.run(
            ["zstd", "-d", "-c", "-q"], input=data, capture_output=True, check=False
        )
        if result.returncode != 0:
            raise InitrdError(f"zstd could not decompress {path}: install zstd")
        return result.stdout
    return data


def init_script() -> bytes:
    return resources.files("harness.images.guest_init").joinpath(INIT_RESOURCE).read_bytes()


def initrd_entries(
    busybox: Path, modules_dir: Path | None, modules: Iterable[str]
) -> list[cpio.Entry]:
    """Everything the initrd holds, in archive order (directories before their contents)."""
    entries = [
        cpio.directory(d)
        for d in ("bin", "dev", "etc", "lib", "lib/modules", "newroot", "proc", "sys")
    ]
    entries.append(cpio.char_device("dev/console", 5, 1))
    entries.append(cpio.file("bin/busybox", busybox.read_bytes(), executable=True))
    entries.append(cpio.symlink("bin/sh", "busybox"))
    entries.append(cpio.file("init", init_script(), executable=True))
    names: list[str] = []
    for relative in modules:
        if modules_dir is None:
            raise InitrdError(f"module {relative} asked for, but the kernel has no modules dir")
        name = module_name(relative) + ".ko"
        entries.append(cpio.file(f"lib/modules/{name}", read_module(modules_dir / relative)))
        names.append(name)
    entries.append(cpio.file(MODULES_LIST, "".join(f"{n}\n" for n in names).encode()))
    return entries


def build_initrd(
    busybox: Path, modules_dir: Path | None, dest: Path, *, builtin: Collection[str] = ()
) -> list[str]:
    """Write the initrd to `dest`; return the module file names it loads, in order.

    `modules_dir` is the kernel's lib/modules/<release> (depmod already run), or None for a
    kernel without modules; `builtin` adds module names known to be built in.
    """
    if not busybox.is_file():
        raise InitrdError(
            f"{busybox} is missing: the recipe's packages must include busybox-static"
        )
    modules = resolve_modules(modules_dir, builtin=builtin)
    entries = initrd_entries(busybox, modules_dir, modules)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_bytes(cpio.archive(entries))
    tmp.replace(dest)
    return [module_name(m) for m in modules]
