// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio_harness_mdev: the DMA engine. A DMA_CMD write copies DMA_LEN bytes, synchronously:
 * guest to device (IOVA to BAR2), device to guest (BAR2 to IOVA) or guest to guest (through
 * a bounce buffer, so overlapping ranges copy like memmove).
 *
 * Guest memory is reached either by pinning its pages (vfio_pin_pages, at most
 * HMDEV_PIN_BATCH pages a call, each page mapped with kmap_local_page) or with vfio_dma_rw.
 * Pinned pages are unpinned before the command ends, unless it asked to keep them: kept
 * ranges go on s->kept_pins (at most HMDEV_MAX_KEPT_PAGES pages) until .dma_unmap of an
 * overlapping IOVA range, a reset or close unpins them.
 *
 * Locking. A command runs with s->lock held, and pins and unpins with it held. .dma_unmap
 * must not take s->lock: type1 calls it with device_list_lock held, and takes that lock under
 * iommu->lock, which vfio_pin_pages takes (a DMA, an unmap and a device open in one container
 * would deadlock). So the pin bookkeeping has its own lock, s->pin_lock (a spinlock), never held
 * while pinning, unpinning or waiting:
 * - A batch is published as "copying" (s->copying_*) from right after vfio_pin_pages until
 *   its copy ends. .dma_unmap waits for an overlapping copy to end: the copy takes no lock,
 *   so the wait always ends. Then a kept batch is on s->kept_pins, where .dma_unmap finds
 *   and unpins it; any other batch is unpinned by the command at once.
 * - .dma_unmap takes the kept ranges it overlaps off the list under pin_lock and unpins them
 *   after dropping it; so do reset and close for every kept range.
 * Pins must be gone when .dma_unmap returns: type1 retries an unmap whose range still has
 * pinned pages only ten times before it BUG()s. What remains is the few instructions between
 * vfio_pin_pages returning and the batch being published, and between a batch leaving the
 * list and its vfio_unpin_pages: type1 retries across those.
 *
 * A command that fails unpins every page it pinned, kept or not (the pins carry its number).
 * A later batch of a command whose earlier kept batch was unmapped meanwhile fails to pin
 * once type1 has removed the mapping, like a device hitting an IOMMU fault.
 */
#include <linux/highmem.h>
#include <linux/iommu.h>
#include <linux/list.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vfio.h>

#include "faults.h"
#include "hmdev.h"

#define HMDEV_DMA_CMD_VALID	(HMDEV_DMA_DIR_MASK | HMDEV_DMA_METHOD_RW | HMDEV_DMA_KEEP_PINNED)

/* One command: what it copies and the pages it has pinned so far. */
struct hmdev_dma_cmd {
	u32 cmd;
	u64 src;
	u64 dst;
	u32 len;
	bool keep;
	u64 seq;		/* tags the ranges it keeps, on s->kept_pins */
	struct page **pages;	/* HMDEV_PIN_BATCH entries for vfio_pin_pages() */
};

/* Pages spanned by [iova, iova + len), len > 0. */
static unsigned long hmdev_span_pages(u64 iova, u32 len)
{
	return (offset_in_page(iova) + (u64)len + PAGE_SIZE - 1) >> PAGE_SHIFT;
}

/* Without s->pin_lock: vfio_unpin_pages takes the IOMMU backend's locks. */
static void hmdev_unpin(struct hmdev_state *s, dma_addr_t iova, unsigned long npages)
{
	vfio_unpin_pages(&s->vdev, iova, npages);
	spin_lock(&s->pin_lock);
	s->total_unpins += npages;
	spin_unlock(&s->pin_lock);
}

/* Unpin and free the ranges on @list, which nobody else can reach any more. */
static void hmdev_unpin_list(struct hmdev_state *s, struct list_head *list)
{
	struct hmdev_kept_pin *pin, *next;

	list_for_each_entry_safe(pin, next, list, node) {
		hmdev_unpin(s, pin->iova, pin->npages);
		list_del(&pin->node);
		kfree(pin);
	}
}

/* Move the kept ranges @match selects from s->kept_pins to @out; s->pin_lock held. */
static unsigned long hmdev_take_pins(struct hmdev_state *s, struct list_head *out,
				     bool (*match)(const struct hmdev_kept_pin *pin, u64 a, u64 b),
				     u64 a, u64 b)
{
	struct hmdev_kept_pin *pin, *next;
	unsigned long pages = 0;

	lockdep_assert_held(&s->pin_lock);
	list_for_each_entry_safe(pin, next, &s->kept_pins, node) {
		if (!match(pin, a, b))
			continue;
		list_move_tail(&pin->node, out);
		pages += pin->npages;
	}
	s->kept_pages -= pages;
	return pages;
}

static bool hmdev_pin_of_cmd(const struct hmdev_kept_pin *pin, u64 seq, u64 unused)
{
	return pin->seq == seq;
}

static bool hmdev_pin_any(const struct hmdev_kept_pin *pin, u64 unused1, u64 unused2)
{
	return true;
}

/* Does the page range [iova, iova + npages pages) overlap [first, last]? */
static bool hmdev_range_overlaps(dma_addr_t iova, unsigned long npages, u64 first, u64 last)
{
	u64 range_last = iova + ((u64)npages << PAGE_SHIFT) - 1;

	return iova <= last && first <= range_last;
}

static bool hmdev_pin_overlaps(const struct hmdev_kept_pin *pin, u64 first, u64 last)
{
	return hmdev_range_overlaps(pin->iova, pin->npages, first, last);
}

static void hmdev_set_copying(struct hmdev_state *s, dma_addr_t iova, unsigned long npages)
{
	spin_lock(&s->pin_lock);
	s->copying_iova = iova;
	s->copying_npages = npages;
	spin_unlock(&s->pin_lock);
}

/*
 * The copy of the batch at @iova ended: put it on s->kept_pins if the command keeps it
 * (where .dma_unmap can find it), and let a waiting .dma_unmap go on.
 */
static void hmdev_copy_done(struct hmdev_state *s, struct hmdev_kept_pin *pin)
{
	spin_lock(&s->pin_lock);
	s->copying_npages = 0;
	if (pin) {
		list_add_tail(&pin->node, &s->kept_pins);
		s->kept_pages += pin->npages;
	}
	spin_unlock(&s->pin_lock);
	wake_up_all(&s->pin_wq);
}

static bool hmdev_copying_overlaps(struct hmdev_state *s, u64 first, u64 last)
{
	bool overlaps;

	spin_lock(&s->pin_lock);
	overlaps = s->copying_npages &&
		   hmdev_range_overlaps(s->copying_iova, s->copying_npages, first, last);
	spin_unlock(&s->pin_lock);
	return overlaps;
}

/* Copy between @buf and the pinned pages that start at page offset @off. */
static void hmdev_copy_pages(struct page **pages, unsigned long off, void *buf, size_t len,
			     bool to_guest)
{
	unsigned long i;

	for (i = 0; len; i++) {
		size_t chunk = min_t(size_t, len, PAGE_SIZE - off);
		void *kaddr = kmap_local_page(pages[i]);

		if (to_guest) {
			memcpy(kaddr + off, buf, chunk);
			flush_dcache_page(pages[i]);
		} else {
			memcpy(buf, kaddr + off, chunk);
		}
		kunmap_local(kaddr);
		buf += chunk;
		len -= chunk;
		off = 0;
	}
}

/*
 * Copy between guest IOVA [iova, iova + len) and @buf by pinning the guest's pages, at most
 * HMDEV_PIN_BATCH pages per vfio_pin_pages() call.
 */
static int hmdev_dma_pinned(struct hmdev_state *s, struct hmdev_dma_cmd *c, u64 iova,
			    void *buf, size_t len, bool to_guest)
{
	int prot = to_guest ? IOMMU_WRITE : IOMMU_READ;
	unsigned long off = offset_in_page(iova);
	dma_addr_t page_iova = iova - off;

	while (len) {
		unsigned long npages = min_t(unsigned long, HMDEV_PIN_BATCH,
					     DIV_ROUND_UP(off + len, PAGE_SIZE));
		size_t chunk = min_t(size_t, len, npages * PAGE_SIZE - off);
		struct hmdev_kept_pin *pin = NULL;
		int ret;

		if (c->keep) {
			pin = kmalloc(sizeof(*pin), GFP_KERNEL);
			if (!pin)
				return -ENOMEM;
			pin->iova = page_iova;
			pin->npages = npages;
			pin->seq = c->seq;
		}
		ret = vfio_pin_pages(&s->vdev, page_iova, npages, prot, c->pages);
		if (ret != (int)npages) {
			kfree(pin);
			/* Backends pin all or nothing; should one not, give back what it did. */
			if (ret > 0)
				vfio_unpin_pages(&s->vdev, page_iova, ret);
			return ret < 0 ? ret : -EFAULT;
		}
		hmdev_set_copying(s, page_iova, npages);
		hmdev_reg_add32(s, HMDEV_REG_TOTAL_PINS, npages);

		hmdev_copy_pages(c->pages, off, buf, chunk, to_guest);

		hmdev_copy_done(s, pin);
		if (!pin)
			hmdev_unpin(s, page_iova, npages);
		buf += chunk;
		len -= chunk;
		page_iova += npages * PAGE_SIZE;
		off = 0;
	}
	return 0;
}

static int hmdev_dma_guest(struct hmdev_state *s, struct hmdev_dma_cmd *c, u64 iova,
			   void *buf, size_t len, bool to_guest)
{
	if (c->cmd & HMDEV_DMA_METHOD_RW)
		return vfio_dma_rw(&s->vdev, iova, buf, len, to_guest);
	return hmdev_dma_pinned(s, c, iova, buf, len, to_guest);
}

/* An IOVA range the engine may try: non-empty and not wrapping around. */
static bool hmdev_iova_ok(u64 iova, u32 len)
{
	u64 last;

	return !check_add_overflow(iova, (u64)len - 1, &last);
}

/* A BAR2 range: inside the device memory. */
static bool hmdev_mem_ok(const struct hmdev_state *s, u64 off, u32 len)
{
	return off < s->mem_size && len <= s->mem_size - off;
}

static int hmdev_dma_check(struct hmdev_state *s, const struct hmdev_dma_cmd *c)
{
	unsigned long need = 0;

	if (c->cmd & ~HMDEV_DMA_CMD_VALID)
		return -EINVAL;
	if (c->keep && (c->cmd & HMDEV_DMA_METHOD_RW))
		return -EINVAL;
	if (!c->len || c->len > HMDEV_DMA_MAX_LEN)
		return -EINVAL;

	switch (c->cmd & HMDEV_DMA_DIR_MASK) {
	case HMDEV_DMA_TO_DEVICE:
		if (!hmdev_iova_ok(c->src, c->len) || !hmdev_mem_ok(s, c->dst, c->len))
			return -EINVAL;
		need = hmdev_span_pages(c->src, c->len);
		break;
	case HMDEV_DMA_FROM_DEVICE:
		if (!hmdev_mem_ok(s, c->src, c->len) || !hmdev_iova_ok(c->dst, c->len))
			return -EINVAL;
		need = hmdev_span_pages(c->dst, c->len);
		break;
	case HMDEV_DMA_GUEST_TO_GUEST:
		if (!hmdev_iova_ok(c->src, c->len) || !hmdev_iova_ok(c->dst, c->len))
			return -EINVAL;
		need = hmdev_span_pages(c->src, c->len) + hmdev_span_pages(c->dst, c->len);
		break;
	default:
		return -EINVAL;
	}
	if (c->keep) {
		unsigned long kept;

		spin_lock(&s->pin_lock);
		kept = s->kept_pages;
		spin_unlock(&s->pin_lock);
		if (kept + need > HMDEV_MAX_KEPT_PAGES)
			return -ENOSPC;
	}
	return 0;
}

static int hmdev_dma_copy(struct hmdev_state *s, struct hmdev_dma_cmd *c)
{
	void *bounce;
	int ret;

	switch (c->cmd & HMDEV_DMA_DIR_MASK) {
	case HMDEV_DMA_TO_DEVICE:
		return hmdev_dma_guest(s, c, c->src, s->mem + c->dst, c->len, false);
	case HMDEV_DMA_FROM_DEVICE:
		return hmdev_dma_guest(s, c, c->dst, s->mem + c->src, c->len, true);
	default:
		bounce = kvmalloc(c->len, GFP_KERNEL);
		if (!bounce)
			return -ENOMEM;
		ret = hmdev_dma_guest(s, c, c->src, bounce, c->len, false);
		if (hmdev_faulty(HMDEV_FAULT_BOUNCE_OVERRUN))
			((u8 *)bounce)[c->len] = 0;
		if (!ret)
			ret = hmdev_dma_guest(s, c, c->dst, bounce, c->len, true);
		kvfree(bounce);
		return ret;
	}
}

static int hmdev_dma_execute(struct hmdev_state *s, struct hmdev_dma_cmd *c)
{
	int ret;

	ret = hmdev_dma_check(s, c);
	if (ret)
		return ret;
	if (!(c->cmd & HMDEV_DMA_METHOD_RW)) {
		c->pages = kmalloc_array(HMDEV_PIN_BATCH, sizeof(*c->pages), GFP_KERNEL);
		if (!c->pages)
			return -ENOMEM;
	}
	ret = hmdev_dma_copy(s, c);
	kfree(c->pages);
	if (ret && c->keep) {
		LIST_HEAD(mine);

		spin_lock(&s->pin_lock);
		hmdev_take_pins(s, &mine, hmdev_pin_of_cmd, c->seq, 0);
		spin_unlock(&s->pin_lock);
		hmdev_unpin_list(s, &mine);
	}
	return ret;
}

void hmdev_dma_run(struct hmdev_state *s)
{
	struct hmdev_dma_cmd c = {
		.cmd = hmdev_reg_read32(s, HMDEV_REG_DMA_CMD),
		.src = hmdev_reg_read64(s, HMDEV_REG_DMA_SRC),
		.dst = hmdev_reg_read64(s, HMDEV_REG_DMA_DST),
		.len = hmdev_reg_read32(s, HMDEV_REG_DMA_LEN),
	};
	u32 irq;
	int ret;

	lockdep_assert_held(&s->lock);
	c.keep = c.cmd & HMDEV_DMA_KEEP_PINNED;
	c.seq = ++s->dma_seq;
	hmdev_reg_write32(s, HMDEV_REG_DMA_STATUS, 0);
	hmdev_reg_write32(s, HMDEV_REG_DMA_ERROR, 0);

	ret = hmdev_dma_execute(s, &c);

	if (ret) {
		hmdev_reg_write32(s, HMDEV_REG_DMA_STATUS, HMDEV_DMA_STATUS_ERROR);
		hmdev_reg_write32(s, HMDEV_REG_DMA_ERROR, -ret);
		irq = HMDEV_IRQ_DMA_ERROR;
	} else {
		hmdev_reg_write32(s, HMDEV_REG_DMA_STATUS, HMDEV_DMA_STATUS_DONE);
		hmdev_reg_add32(s, HMDEV_REG_DMA_DONE_COUNT, 1);
		irq = HMDEV_IRQ_DMA_DONE;
	}
	hmdev_reg_write32(s, HMDEV_REG_IRQ_STATUS, hmdev_reg_read32(s, HMDEV_REG_IRQ_STATUS) | irq);
	hmdev_irq_raise(s, irq);
	if (ret)
		hmdev_irq_signal(s, VFIO_PCI_ERR_IRQ_INDEX);
}

void hmdev_dma_init(struct hmdev_state *s)
{
	spin_lock_init(&s->pin_lock);
	init_waitqueue_head(&s->pin_wq);
	INIT_LIST_HEAD(&s->kept_pins);
}

void hmdev_dma_open(struct hmdev_state *s)
{
	lockdep_assert_held(&s->lock);
	spin_lock(&s->pin_lock);
	s->total_unpins = 0;
	s->unmap_calls = 0;
	spin_unlock(&s->pin_lock);
}

void hmdev_dma_unpin_all(struct hmdev_state *s)
{
	LIST_HEAD(all);

	lockdep_assert_held(&s->lock);
	spin_lock(&s->pin_lock);
	hmdev_take_pins(s, &all, hmdev_pin_any, 0, 0);
	spin_unlock(&s->pin_lock);
	hmdev_unpin_list(s, &all);
}

void hmdev_dma_sync_regs(struct hmdev_state *s)
{
	lockdep_assert_held(&s->lock);
	spin_lock(&s->pin_lock);
	hmdev_reg_write32(s, HMDEV_REG_PINNED_PAGES, s->kept_pages);
	hmdev_reg_write32(s, HMDEV_REG_TOTAL_UNPINS, s->total_unpins);
	hmdev_reg_write32(s, HMDEV_REG_DMA_UNMAP_CALLS, s->unmap_calls);
	spin_unlock(&s->pin_lock);
}

/*
 * .dma_unmap: user space is unmapping [iova, iova + length) from the IOMMU; every page we
 * keep pinned in it must be unpinned before we return. Runs without s->lock (see the top).
 */
void hmdev_dma_unmap(struct vfio_device *vdev, u64 iova, u64 length)
{
	struct hmdev_state *s = to_hmdev(vdev);
	unsigned long unpinned;
	LIST_HEAD(gone);
	u64 last;

	if (!length)
		return;
	if (check_add_overflow(iova, length - 1, &last))
		last = U64_MAX;
	if (hmdev_faulty(HMDEV_FAULT_KEEP_PINS_ON_UNMAP))
		return;

	/* A batch being copied in the range: let the copy end, so the batch is kept or gone. */
	wait_event(s->pin_wq, !hmdev_copying_overlaps(s, iova, last));

	spin_lock(&s->pin_lock);
	unpinned = hmdev_take_pins(s, &gone, hmdev_pin_overlaps, iova, last);
	if (unpinned)
		s->unmap_calls++;
	spin_unlock(&s->pin_lock);
	hmdev_unpin_list(s, &gone);
}
