/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Deliberate bugs, for proving that the conformance suite catches what they do. They are
 * compiled in only by `make HMDEV_FAULTS=1` (harness: build_vendor_module(faults=True));
 * a normal build has neither the code nor the `fault` module parameter.
 */
#ifndef HMDEV_FAULTS_H
#define HMDEV_FAULTS_H

#include <linux/bits.h>
#include <linux/types.h>

#define HMDEV_FAULT_KEEP_PINS_ON_UNMAP	BIT(0)	/* .dma_unmap leaves kept pages pinned */
#define HMDEV_FAULT_MEM_OVERRUN		BIT(1)	/* BAR2 writes run a page past device memory */
#define HMDEV_FAULT_WARN_ON_RESET	BIT(2)	/* VFIO_DEVICE_RESET hits a WARN */
#define HMDEV_FAULT_BOUNCE_OVERRUN	BIT(3)	/* guest-to-guest DMA overruns its bounce buffer */

#ifdef HMDEV_FAULTS
extern unsigned int hmdev_fault;

static inline bool hmdev_faulty(unsigned int fault)
{
	return READ_ONCE(hmdev_fault) & fault;
}
#else
static inline bool hmdev_faulty(unsigned int fault)
{
	return false;
}
#endif

#endif /* HMDEV_FAULTS_H */
