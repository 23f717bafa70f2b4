# SPDX-License-Identifier: MIT
"""The mdev sysfs layer: parents, types and mediated devices, rooted at a configurable path.

    sysfs = MdevSysfs()                      # or MdevSysfs(tmp_root, FakeMdevTree(...).io)
    device = sysfs.find_type("mtty-1").create()
    device.iommu_group, device.group_node, device.vfio_cdev
    device.remove()

The fake kernel side for unit tests lives in harness.mdev.fake (not imported here).
"""

from harness.mdev.errors import MdevAmbiguousTypeError, MdevError, MdevNotFoundError
from harness.mdev.layout import SysfsLayout
from harness.mdev.sysfs import MdevDevice, MdevParent, MdevSysfs, MdevType, device_name
from harness.mdev.sysfs_io import RealSysfsIO, SysfsIO

__all__ = [
    "MdevAmbiguousTypeError",
    "MdevDevice",
    "MdevError",
    "MdevNotFoundError",
    "MdevParent",
    "MdevSysfs",
    "MdevType",
    "RealSysfsIO",
    "SysfsIO",
    "SysfsLayout",
    "device_name",
]
