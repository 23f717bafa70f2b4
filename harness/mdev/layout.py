# SPDX-License-Identifier: MIT
"""Where the kernel puts mdev things, under a configurable root.

Rooting every path (like mdevctl's MDEVCTL_ENV_ROOT) lets the same model run against the live
system (`/`), a guest's tree, or a fake tree in a temporary directory. Sysfs symlinks are
relative, so they resolve inside the root as well.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SysfsLayout:
    """Paths of the mdev-related sysfs directories and /dev nodes below `root`."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str] = "/") -> SysfsLayout:
        return cls(Path(root))

    @property
    def sys_devices(self) -> Path:
        return self.root / "sys/devices"

    @property
    def mdev_bus_class(self) -> Path:
        """sys/class/mdev_bus: one symlink per registered parent (mdev_core.c class_compat)."""
        return self.root / "sys/class/mdev_bus"

    @property
    def mdev_bus_devices(self) -> Path:
        """sys/bus/mdev/devices: one symlink per mdev, named by its lower-case UUID."""
        return self.root / "sys/bus/mdev/devices"

    @property
    def mdev_bus_drivers(self) -> Path:
        return self.root / "sys/bus/mdev/drivers"

    @property
    def iommu_groups(self) -> Path:
        return self.root / "sys/kernel/iommu_groups"

    @property
    def vfio_dev_class(self) -> Path:
        """sys/class/vfio-dev: one entry per registered vfio_device (vfio_main.c)."""
        return self.root / "sys/class/vfio-dev"

    @property
    def dev_vfio(self) -> Path:
        return self.root / "dev/vfio"

    @property
    def dev_vfio_devices(self) -> Path:
        return self.root / "dev/vfio/devices"

    def group_node(self, group: int) -> Path:
        """The VFIO group character device, /dev/vfio/<N>."""
        return self.dev_vfio / str(group)

    def cdev_node(self, vfio_device_name: str) -> Path:
        """The per-device cdev, /dev/vfio/devices/vfioN (CONFIG_VFIO_DEVICE_CDEV, 6.6+)."""
        return self.dev_vfio_devices / vfio_device_name
