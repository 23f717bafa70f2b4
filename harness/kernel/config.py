# SPDX-License-Identifier: MIT
"""Does a kernel have what the harness guest needs? Checked from its .config and its modules.

The guest boots through the harness initrd from a virtio-blk ext4 disk, is reached over
virtio-net, and must load vfio, vfio_iommu_type1 and mdev. Each driver may be built in or a
module; a module must then be in the kernel's module tree. Without a .config the module tree
alone decides (modules.builtin lists what is built in).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.images.initrd import MODULE_SUFFIXES, builtin_modules, module_name


@dataclass(frozen=True)
class Requirement:
    symbol: str  # without CONFIG_
    module: str | None  # its module name, for a driver that may be =m; None: must be =y
    why: str
    hint: str = ""


DRIVERS = (
    Requirement("VIRTIO_PCI", "virtio_pci", "the disks and the NIC are virtio-pci devices"),
    Requirement("VIRTIO_BLK", "virtio_blk", "the root disk is virtio-blk"),
    Requirement("EXT4_FS", "ext4", "the root and modules disks are ext4"),
    Requirement("VIRTIO_NET", "virtio_net", "the harness reaches the guest's SSH over virtio-net"),
    Requirement("VFIO", "vfio", "the harness tests VFIO"),
    Requirement("VFIO_IOMMU_TYPE1", "vfio_iommu_type1", "the type1 IOMMU backend is tested"),
    Requirement(
        "VFIO_MDEV",
        "mdev",
        "the harness loads the mdev core",
        "it has no prompt of its own: enable a driver that selects it, e.g. "
        "CONFIG_SAMPLE_VFIO_MDEV_MTTY=m",
    ),
)
BUILT_IN = (
    Requirement("BLK_DEV_INITRD", None, "the harness boots through an initrd"),
    Requirement("DEVTMPFS", None, "the initrd finds its disks in devtmpfs"),
)

_SETTING = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")


def parse_config(text: str) -> dict[str, str]:
    """{symbol without CONFIG_: value}; symbols that are 'not set' are simply absent."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        match = _SETTING.match(line.strip())
        if match:
            settings[match.group(1)] = match.group(2)
    return settings


@dataclass(frozen=True)
class ModuleIndex:
    """The module names a kernel ships and those it has built in; `where` names the source."""

    modules: frozenset[str]
    builtin: frozenset[str]
    where: Path

    @classmethod
    def of_tree(cls, modules_dir: Path) -> ModuleIndex:
        """From an installed lib/modules/<release> (the files themselves, not modules.dep)."""
        names: set[str] = set()
        for _directory, _dirs, files in os.walk(modules_dir):  # does not follow build/source
            names.update(module_name(f) for f in files if f.endswith(MODULE_SUFFIXES))
        return cls(frozenset(names), _builtin(modules_dir / "modules.builtin"), modules_dir)

    @classmethod
    def of_source_tree(cls, tree: Path) -> ModuleIndex:
        """From a built tree: modules.order lists the modules `make modules_install` installs."""
        order = tree / "modules.order"
        lines = order.read_text(encoding="utf-8").split() if order.is_file() else []
        names = frozenset(order_entry_name(line) for line in lines)
        return cls(names, _builtin(tree / "modules.builtin"), tree)


def order_entry_name(entry: str) -> str:
    """modules.order lists `drivers/vfio/vfio.o` (6.2+) or `kernel/.../vfio.ko` (older)."""
    base = entry.rsplit("/", 1)[-1]
    return module_name(base[: -len(".o")] if base.endswith(".o") else base)


def _builtin(path: Path) -> frozenset[str]:
    return frozenset(builtin_modules(path.read_text(encoding="utf-8")) if path.is_file() else ())


def driver_state(
    requirement: Requirement, config: Mapping[str, str] | None, index: ModuleIndex | None
) -> str | None:
    """'y', 'm', None (neither), or 'unknown' when there is neither a config nor modules."""
    if config is not None:
        value = config.get(requirement.symbol)
        return value if value in ("y", "m") else None
    if index is None or requirement.module is None:
        return "unknown"
    if requirement.module in index.builtin:
        return "y"
    return "m" if requirement.module in index.modules else None


def kernel_problems(config: Mapping[str, str] | None, index: ModuleIndex | None) -> list[str]:
    """One line per missing requirement, each saying what to do; empty when all is there."""
    problems = []
    for requirement in BUILT_IN:
        if config is not None and config.get(requirement.symbol) != "y":
            problems.append(
                f"CONFIG_{requirement.symbol} is not built in ({requirement.why}): set it to y"
            )
    for requirement in DRIVERS:
        state = driver_state(requirement, config, index)
        hint = f"; {requirement.hint}" if requirement.hint else ""
        if state is None:
            problems.append(
                f"CONFIG_{requirement.symbol} is neither built in nor a module "
                f"({requirement.why}){hint}"
            )
        elif state == "m" and index is None:
            problems.append(
                f"CONFIG_{requirement.symbol}=m but the kernel comes without modules "
                f"({requirement.why}): build it in (=y), or pass the build directory with its "
                "lib/modules/<release> (make modules_install INSTALL_MOD_PATH=DIR)"
            )
        elif state == "m" and index is not None and requirement.module not in index.modules:
            problems.append(
                f"CONFIG_{requirement.symbol}=m but {index.where} has no {requirement.module} "
                f"module ({requirement.why}): install this build's modules again "
                "(make modules_install)"
            )
    return problems


def builtin_drivers(config: Mapping[str, str] | None, index: ModuleIndex | None) -> set[str]:
    """Module names of the required drivers that are built in (the initrd skips them).

    With neither a config nor modules nothing can be checked: the drivers are assumed built in,
    which is the only way such a kernel can mount its root disk.
    """
    built_in = set()
    for requirement in DRIVERS:
        if requirement.module and driver_state(requirement, config, index) in ("y", "unknown"):
            built_in.add(requirement.module)
    return built_in
