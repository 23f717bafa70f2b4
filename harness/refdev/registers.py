# SPDX-License-Identifier: MIT
"""The reference device's register map and PCI identity: kmod/hmdev_regs.h in Python.

Each name is the C macro without its HMDEV_ prefix (HMDEV_REG_DMA_CMD -> REG_DMA_CMD), and
tests/unit/test_refdev_registers.py checks every value against the header, both ways, so the
two cannot drift. kmod/README.md says what each register does.
"""

from __future__ import annotations

# PCI identity (config space, region 7)
PCI_VENDOR_ID = 0x1DE5
PCI_DEVICE_ID = 0x0001
PCI_REVISION = 0x01
PCI_CLASS = 0xFF0000
PCI_MSI_CAP_OFFSET = 0x40

# Read-only identification values
ID_VALUE = 0x484D4456  # "VDMH" as little-endian bytes
VERSION_VALUE = 0x00010000

# BAR0 register offsets
REG_ID = 0x000
REG_VERSION = 0x004
REG_TYPE = 0x008
REG_MEM_SIZE = 0x00C
REG_SCRATCH0 = 0x010
NR_SCRATCH = 8
REG_IRQ_STATUS = 0x040
REG_IRQ_MASK = 0x044
REG_IRQ_RAISE = 0x048
REG_DMA_SRC = 0x080
REG_DMA_DST = 0x088
REG_DMA_LEN = 0x090
REG_DMA_CMD = 0x094
REG_DMA_STATUS = 0x098
REG_DMA_ERROR = 0x09C
REG_DMA_DONE_COUNT = 0x0A0
REG_PINNED_PAGES = 0x0C0
REG_TOTAL_PINS = 0x0C4
REG_TOTAL_UNPINS = 0x0C8
REG_DMA_UNMAP_CALLS = 0x0CC
REG_RESET_COUNT = 0x0D0
REG_BAR0_ACCESSES = 0x0D4
REG_BAR2_TRAPPED = 0x0D8

# IRQ_STATUS / IRQ_MASK / IRQ_RAISE bits
IRQ_DMA_DONE = 0x1
IRQ_DMA_ERROR = 0x2
IRQ_SOFTWARE = 0x4
IRQ_ALL = 0x7

# DMA_CMD fields
DMA_DIR_MASK = 0x3
DMA_TO_DEVICE = 0x0  # guest IOVA -> BAR2 offset
DMA_FROM_DEVICE = 0x1  # BAR2 offset -> guest IOVA
DMA_GUEST_TO_GUEST = 0x2  # guest IOVA -> guest IOVA
DMA_METHOD_RW = 0x10  # vfio_dma_rw() instead of pinning
DMA_KEEP_PINNED = 0x20  # pin method: keep pages until unmap

# DMA_STATUS bits
DMA_STATUS_DONE = 0x1
DMA_STATUS_ERROR = 0x2
