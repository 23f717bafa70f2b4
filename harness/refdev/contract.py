# SPDX-License-Identifier: MIT
"""What kmod/README.md promises beyond the register map: names in sysfs, types, sizes, limits.

The sizes and limits that kmod/hmdev.h also defines are checked against it by
tests/unit/test_refdev_registers.py; the rest is the README's word.
"""

from __future__ import annotations

from dataclasses import dataclass

MODULE_NAME = "vfio_harness_mdev"  # HMDEV_NAME; the file is vfio_harness_mdev.ko
PARENT_NAME = "vfio_harness"  # /sys/class/mdev_bus/vfio_harness
DEVICE_API = "vfio-pci"

# Module parameters and their defaults.
POOL_MIB_DEFAULT = 64
MAX_INSTANCES_DEFAULT = 8

CONFIG_SIZE = 256  # HMDEV_CONFIG_SIZE
BAR0_SIZE = 4096  # HMDEV_BAR0_SIZE
DMA_MAX_LEN = 1 << 20  # HMDEV_DMA_MAX_LEN
MAX_KEPT_PAGES = 1024  # HMDEV_MAX_KEPT_PAGES
PIN_BATCH = 512  # HMDEV_PIN_BATCH

MIB = 1 << 20


@dataclass(frozen=True)
class RefType:
    """One mdev type of the reference driver."""

    index: int  # the TYPE register; the subsystem ID is index + 1
    sysfs_name: str
    name: str  # the type's `name` attribute
    mem_size: int  # BAR2 bytes

    @property
    def type_id(self) -> str:
        """The directory under mdev_supported_types: "<driver>-<sysfs name>"."""
        return f"{MODULE_NAME}-{self.sysfs_name}"

    @property
    def subsystem_id(self) -> int:
        return self.index + 1


SMALL = RefType(0, "small", "harness small", 1 * MIB)
LARGE = RefType(1, "large", "harness large", 8 * MIB)
TYPES = (SMALL, LARGE)


def available_instances(mem_size: int, created: int, pool_used: int) -> int:
    """What a type's available_instances should read: the per-type cap and the shared memory
    pool both limit it (defaults of pool_mib and max_instances)."""
    by_pool = (POOL_MIB_DEFAULT * MIB - pool_used) // mem_size
    return max(0, min(MAX_INSTANCES_DEFAULT - created, by_pool))
