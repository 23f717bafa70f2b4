/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vfio_harness_mdev: shared state and the interfaces between the driver's files.
 *
 * main.c      module init/exit, parent device, mdev types, probe/remove, vfio_device_ops
 * config.c    emulated PCI config space (region 7)
 * bar0.c      the register block (region 0) and its side effects
 * dma.c       the DMA engine: pin/unpin, vfio_dma_rw, kept pins, .dma_unmap
 * mem.c       device memory (region 2): read/write, mmap, sparse-mmap capability
 * irq.c       INTx, MSI, ERR, REQ: SET_IRQS, eventfds, loopback triggers
 * migration.c VFIO migration v2 (STOP, RUNNING, STOP_COPY, RESUMING, PRE_COPY)
 * compat.h    every kernel version difference, in one place
 *
 * The register map is documented in README.md; its offsets are in hmdev_regs.h.
 *
 * Locking: s->lock (a mutex) protects everything in struct hmdev_state that changes after
 * probe, except the pin bookkeeping under s->pin_lock. Unless a comment says otherwise, the
 * functions declared here are called with s->lock held. The DMA engine pins and unpins
 * pages with s->lock held (lock order: s->lock, then the IOMMU backend's locks). .dma_unmap
 * never takes s->lock: type1 calls it with its device_list_lock held, which it takes under
 * iommu->lock, the lock pinning takes. s->pin_lock is innermost: nothing is pinned,
 * unpinned or waited for while it is held. mmap runs under mmap_lock and never takes s->lock.
 */
#ifndef HMDEV_H
#define HMDEV_H

#include <linux/eventfd.h>
#include <linux/list.h>
#include <linux/mdev.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/vfio.h>
#include <linux/wait.h>

#include "hmdev_regs.h"

#define HMDEV_NAME		"vfio_harness_mdev"
#define HMDEV_CONFIG_SIZE	256
#define HMDEV_BAR0_SIZE		4096
#define HMDEV_MAX_KEPT_PAGES	1024
#define HMDEV_PIN_BATCH		512
#define HMDEV_DMA_MAX_LEN	0x100000	/* 1 MiB */

/* Region N of the device fd starts at N << 40, as in vfio-pci. */
#define HMDEV_REGION_SHIFT	40
#define HMDEV_REGION_OFFSET(index)	((u64)(index) << HMDEV_REGION_SHIFT)
#define HMDEV_REGION_MASK	(HMDEV_REGION_OFFSET(1) - 1)

enum hmdev_type_index {
	HMDEV_TYPE_SMALL = 0,
	HMDEV_TYPE_LARGE = 1,
	HMDEV_NR_TYPES,
};

struct hmdev_type {
	struct mdev_type type;	/* embedded: sysfs name, pretty name */
	enum hmdev_type_index index;
	size_t mem_size;	/* BAR2 bytes */
	const char *description;
};

/* One IRQ index's user-space side: an eventfd trigger, and INTx's mask state. */
struct hmdev_irq {
	struct eventfd_ctx *trigger;
	bool masked;		/* INTx only: auto-masked on fire, unmasked by SET_IRQS */
	bool enabled;		/* MSI: enabled through SET_IRQS */
};

/*
 * One vfio_pin_pages() batch of the DMA engine. It is on s->pins from before its pages are
 * pinned until after they are unpinned, so that .dma_unmap sees every pin for its whole life.
 */
enum hmdev_pin_state {
	HMDEV_PIN_BUSY,		/* its owner is pinning, copying through or unpinning it */
	HMDEV_PIN_KEPT,		/* pinned and unowned: kept by a command for later unmap */
};

struct hmdev_pin {
	struct list_head node;		/* on s->pins */
	struct list_head claimed;	/* on the list of whoever claimed it for unpinning */
	dma_addr_t iova;		/* page aligned */
	unsigned long npages;		/* at most HMDEV_PIN_BATCH */
	u64 seq;			/* the command that pinned it */
	enum hmdev_pin_state state;
};

/* An IOVA range .dma_unmap is unmapping: no batch may start to pin in it meanwhile. */
struct hmdev_unmap_fence {
	struct list_head node;		/* on s->unmap_fences */
	u64 first;
	u64 last;
};

struct hmdev_mig_file;

struct hmdev_state {
	struct vfio_device vdev;	/* first: container_of() from the core's pointer */
	const struct hmdev_type *type;
	struct mutex lock;		/* everything below */
	bool open;

	u8 config[HMDEV_CONFIG_SIZE];
	u32 bar0_addr_mask;		/* writable (address) bits of BAR0 */
	u64 bar2_addr_mask;		/* ... and of the 64-bit BAR2 */
	u8 regs[HMDEV_BAR0_SIZE];	/* register bytes, little endian (hmdev_regs.h) */

	void *mem;			/* BAR2: vmalloc_user() memory, mem_size bytes */
	size_t mem_size;		/* set at probe, never changes: read without s->lock */

	struct hmdev_irq irqs[VFIO_PCI_NUM_IRQS];

	/* dma.c's pin bookkeeping, under pin_lock; .dma_unmap reads and changes it */
	spinlock_t pin_lock;
	wait_queue_head_t pin_wq;	/* woken when a busy pin is kept or gone */
	struct list_head pins;		/* struct hmdev_pin, busy or kept */
	struct list_head unmap_fences;	/* struct hmdev_unmap_fence */
	unsigned long kept_pages;	/* pages of the kept pins: PINNED_PAGES */
	u32 total_unpins;		/* TOTAL_UNPINS */
	u32 unmap_calls;		/* DMA_UNMAP_CALLS */
	u64 dma_seq;			/* the last command's number, tags its kept pins */

	/* migration.c */
	enum vfio_device_mig_state mig_state;
	struct hmdev_mig_file *saving;
	struct hmdev_mig_file *resuming;
};

static inline struct hmdev_state *to_hmdev(struct vfio_device *vdev)
{
	return container_of(vdev, struct hmdev_state, vdev);
}

/* Register accessors on s->regs (little endian), for any file holding s->lock. */
u32 hmdev_le32_at(const u8 *p);	/* any byte buffer, no lock */
u32 hmdev_reg_read32(const struct hmdev_state *s, unsigned int off);
void hmdev_reg_write32(struct hmdev_state *s, unsigned int off, u32 val);
u64 hmdev_reg_read64(const struct hmdev_state *s, unsigned int off);
void hmdev_reg_add32(struct hmdev_state *s, unsigned int off, u32 n);

/* config.c: pos is the offset inside the 256 bytes */
void hmdev_config_init(struct hmdev_state *s);
ssize_t hmdev_config_rw(struct hmdev_state *s, char *buf, size_t count, loff_t pos,
			bool write);
bool hmdev_config_msi_enabled(const struct hmdev_state *s);
void hmdev_config_set_msi_enable(struct hmdev_state *s, bool enable);
bool hmdev_config_intx_disabled(const struct hmdev_state *s);
/* Could this device's config space hold @cfg? Its read-only bits must be this device's. */
bool hmdev_config_possible(const struct hmdev_state *s, const u8 *cfg);

/* bar0.c: pos is the offset inside BAR0 */
void hmdev_regs_init(struct hmdev_state *s);	/* power-on values, counters zeroed */
/* Could this device's registers hold @regs (HMDEV_BAR0_SIZE bytes, e.g. from a stream)? */
bool hmdev_regs_possible(const struct hmdev_state *s, const u8 *regs);
ssize_t hmdev_bar0_rw(struct hmdev_state *s, char *buf, size_t count, loff_t pos,
		      bool write);

/* dma.c */
void hmdev_dma_run(struct hmdev_state *s);	/* the DMA_CMD doorbell: runs regs' command */
void hmdev_dma_init(struct hmdev_state *s);	/* from probe, no lock */
void hmdev_dma_open(struct hmdev_state *s);	/* from open: counters since open zeroed */
void hmdev_dma_unpin_all(struct hmdev_state *s);
void hmdev_dma_sync_regs(struct hmdev_state *s);	/* pin counters into s->regs, for reads */
void hmdev_dma_unmap(struct vfio_device *vdev, u64 iova, u64 length);	/* without s->lock */

/* mem.c: pos is the offset inside BAR2 */
ssize_t hmdev_mem_rw(struct hmdev_state *s, char *buf, size_t count, loff_t pos,
		     bool write);
int hmdev_mem_mmap(struct hmdev_state *s, struct vm_area_struct *vma);	/* without s->lock */
int hmdev_mem_region_info(struct hmdev_state *s, struct vfio_region_info *info,
			  struct vfio_info_cap *caps);	/* without s->lock */

/* irq.c */
int hmdev_set_irqs(struct hmdev_state *s, struct vfio_irq_set *hdr, void *data);
void hmdev_irq_raise(struct hmdev_state *s, u32 status_bits);	/* after IRQ_STATUS |= */
void hmdev_irq_update(struct hmdev_state *s);	/* INTx line after STATUS/MASK/command change */
bool hmdev_irq_intx_pending(const struct hmdev_state *s);	/* PCI_STATUS_INTERRUPT */
void hmdev_irq_signal(struct hmdev_state *s, unsigned int index);
void hmdev_irq_clear_pending(struct hmdev_state *s);	/* reset: INTx unmasked */
void hmdev_irq_release_all(struct hmdev_state *s);

/*
 * main.c: VFIO_DEVICE_RESET: registers back to their defaults (except the counters kept
 * since open: TOTAL_PINS, TOTAL_UNPINS, DMA_UNMAP_CALLS, RESET_COUNT, which goes up by one),
 * DMA stopped, pending interrupts cleared, every kept page unpinned. Config space and the
 * eventfds attached through SET_IRQS are left alone.
 */
void hmdev_reset(struct hmdev_state *s);

/* migration.c */
void hmdev_mig_setup(struct hmdev_state *s);	/* from probe (no lock): sets mig_ops, flags */
/* from close_device and VFIO_DEVICE_RESET, s->lock held: end any session, back to RUNNING */
void hmdev_mig_close(struct hmdev_state *s);
bool hmdev_mig_running(const struct hmdev_state *s);	/* DMA and doorbells allowed */

#endif /* HMDEV_H */
