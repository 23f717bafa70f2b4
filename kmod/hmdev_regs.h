/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vfio_harness_mdev register map (BAR0) and PCI identity. README.md describes each register;
 * harness/refdev/registers.py mirrors these values and a unit test compares the two.
 */
#ifndef HMDEV_REGS_H
#define HMDEV_REGS_H

#define HMDEV_PCI_VENDOR_ID		0x1de5
#define HMDEV_PCI_DEVICE_ID		0x0001
#define HMDEV_PCI_REVISION		0x01
#define HMDEV_PCI_CLASS			0xff0000
#define HMDEV_PCI_MSI_CAP_OFFSET	0x40

#define HMDEV_ID_VALUE			0x484d4456
#define HMDEV_VERSION_VALUE		0x00010000

#define HMDEV_REG_ID			0x000
#define HMDEV_REG_VERSION		0x004
#define HMDEV_REG_TYPE			0x008
#define HMDEV_REG_MEM_SIZE		0x00c
#define HMDEV_REG_SCRATCH0		0x010
#define HMDEV_NR_SCRATCH		8
#define HMDEV_REG_IRQ_STATUS		0x040
#define HMDEV_REG_IRQ_MASK		0x044
#define HMDEV_REG_IRQ_RAISE		0x048
#define HMDEV_REG_DMA_SRC		0x080
#define HMDEV_REG_DMA_DST		0x088
#define HMDEV_REG_DMA_LEN		0x090
#define HMDEV_REG_DMA_CMD		0x094
#define HMDEV_REG_DMA_STATUS		0x098
#define HMDEV_REG_DMA_ERROR		0x09c
#define HMDEV_REG_DMA_DONE_COUNT	0x0a0
#define HMDEV_REG_PINNED_PAGES		0x0c0
#define HMDEV_REG_TOTAL_PINS		0x0c4
#define HMDEV_REG_TOTAL_UNPINS		0x0c8
#define HMDEV_REG_DMA_UNMAP_CALLS	0x0cc
#define HMDEV_REG_RESET_COUNT		0x0d0
#define HMDEV_REG_BAR0_ACCESSES		0x0d4
#define HMDEV_REG_BAR2_TRAPPED		0x0d8

#define HMDEV_IRQ_DMA_DONE		0x1
#define HMDEV_IRQ_DMA_ERROR		0x2
#define HMDEV_IRQ_SOFTWARE		0x4
#define HMDEV_IRQ_ALL			0x7

#define HMDEV_DMA_DIR_MASK		0x3
#define HMDEV_DMA_TO_DEVICE		0x0	/* guest IOVA -> BAR2 offset */
#define HMDEV_DMA_FROM_DEVICE		0x1	/* BAR2 offset -> guest IOVA */
#define HMDEV_DMA_GUEST_TO_GUEST	0x2	/* guest IOVA -> guest IOVA */
#define HMDEV_DMA_METHOD_RW		0x10	/* vfio_dma_rw() instead of pinning */
#define HMDEV_DMA_KEEP_PINNED		0x20	/* pin method: keep pages until unmap */

#define HMDEV_DMA_STATUS_DONE		0x1
#define HMDEV_DMA_STATUS_ERROR		0x2

#endif /* HMDEV_REGS_H */
