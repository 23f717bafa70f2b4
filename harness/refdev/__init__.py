# SPDX-License-Identifier: MIT
"""The reference mdev device (kmod/, vfio_harness_mdev) from user space.

- `registers`: the BAR0 register map and PCI identity, mirroring kmod/hmdev_regs.h.
- `contract`: module, parent and type names, sizes and limits from kmod/README.md.
- `device`: `RefDevice`, registers, device memory and the DMA engine over a harness.uapi Device.
- `pci_config`: BAR sizing through the emulated config space.

Only the standard library and harness.uapi are imported: this package also runs inside guests
(see harness.vm.guest_python).
"""

from harness.refdev.device import Counters, Direction, DmaError, DmaResult, Method, RefDevice

__all__ = ["Counters", "Direction", "DmaError", "DmaResult", "Method", "RefDevice"]
