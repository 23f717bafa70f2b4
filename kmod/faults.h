/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Deliberate bugs, for proving that the conformance suite catches what they do. They are
 * compiled in only by `make HMDEV_FAULTS=1` (harness: build_vendor_module(faults=True));
 * a normal build has neither the code nor the `fault` module parameter.
 */
#ifndef HMDEV_FAULTS_H
#define HMDEV_FAULTS_H

#include <linux/bits.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/types.h>

#define HMDEV_FAULT_KEEP_PINS_ON_UNMAP	BIT(0)	/* .dma_unmap leaves kept pages pinned */
#define HMDEV_FAULT_MEM_OVERRUN		BIT(1)	/* BAR2 writes run a page past device memory */
#define HMDEV_FAULT_WARN_ON_RESET	BIT(2)	/* VFIO_DEVICE_RESET hits a WARN */
#define HMDEV_FAULT_BOUNCE_OVERRUN	BIT(3)	/* guest-to-guest DMA overruns its bounce buffer */
#define HMDEV_FAULT_LEAK_ON_RESET	BIT(4)	/* VFIO_DEVICE_RESET leaks 256 bytes */
#define HMDEV_FAULT_MIG_LOSE_DIRTY	BIT(5)	/* pre-copy never resends what changed */

#ifdef HMDEV_FAULTS
extern unsigned int hmdev_fault;

static inline bool hmdev_faulty(unsigned int fault)
{
	return READ_ONCE(hmdev_fault) & fault;
}

/* Allocate @size bytes and lose the only pointer to them. */
static inline void hmdev_leak(size_t size)
{
	u8 *lost = kmalloc(size, GFP_KERNEL);

	if (lost)
		memset(lost, 0x5a, size);
}
#else
static inline bool hmdev_faulty(unsigned int fault)
{
	return false;
}

static inline void hmdev_leak(size_t size)
{
}
#endif

#endif /* HMDEV_FAULTS_H */
