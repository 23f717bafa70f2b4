// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio_harness_mdev: the DMA engine. A DMA_CMD write copies DMA_LEN bytes, synchronously:
 * guest to device (IOVA to BAR2), device to guest (BAR2 to IOVA) or guest to guest (through
 * a bounce buffer, so overlapping ranges copy like memmove).
 *
 * Guest memory is reached either by pinning its pages (vfio_pin_pages, at most
 * HMDEV_PIN_BATCH pages a call, each page mapped with kmap_local_page) or with vfio_dma_rw.
 * Pinned pages are unpinned before the command ends, unless it asked to keep them: kept
 * batches stay pinned (at most HMDEV_MAX_KEPT_PAGES pages) until .dma_unmap of an overlapping
 * IOVA range, a reset or close unpins them.
 *
 * Pins and .dma_unmap. When .dma_unmap returns, no page of the range may be pinned: type1
 * calls it again at once, ten times at most, and then BUG()s; iommufd WARNs after a hundred
 * calls and fails the unmap with EDEADLK. So every batch is on s->pins from before
 * vfio_pin_pages until after its vfio_unpin_pages, busy while its owner (the command, or
 * whoever claimed it to unpin it) works on it, kept while it waits for an unmap. .dma_unmap
 * first fences its range, so that no batch starts to pin in it, then unpins the kept batches
 * there and waits for the busy ones to end, again until none is left.
 *
 * Locking. A command runs with s->lock held, and pins and unpins with it held. .dma_unmap
 * must not take s->lock: type1 calls it with device_list_lock held, and takes that lock under
 * iommu->lock, which vfio_pin_pages takes (a DMA, an unmap and a device open in one container
 * would deadlock). The pin bookkeeping has its own lock, s->pin_lock (a spinlock), never held
 * while pinning, unpinning or waiting. A busy batch's owner may itself wait for iommu->lock
 * (to pin or unpin), which a device open in the container holds while it waits for the
 * device_list_lock type1 holds around .dma_unmap: so under type1 .dma_unmap waits for busy
 * batches at most HMDEV_UNMAP_WAIT at a time, and then returns for type1 to call it again,
 * which lets that open go on. Its own unpinning of kept batches cannot avoid that cycle:
 * vfio_unpin_pages takes iommu->lock under the notifier's device_list_lock, the reverse of
 * type1's register_device; that is type1's own lock order, whatever the driver does.
 * Through iommufd, which calls .dma_unmap with none of its locks held, the wait is unbounded.
 *
 * A command that fails unpins every page it pinned, kept or not (the pins carry its number).
 * A later batch of a command whose earlier kept batch was unmapped meanwhile fails to pin
 * once type1 has removed the mapping (or with EFAULT while the unmap is going on), like a
 * device hitting an IOMMU fault.
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

#include "compat.h"
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

/* The longest .dma_unmap waits for busy batches before type1 or iommufd calls it again. */
#define HMDEV_UNMAP_WAIT	HZ

/* Does the page range [iova, iova + npages pages) overlap [first, last]? */
static bool hmdev_range_overlaps(dma_addr_t iova, unsigned long npages, u64 first, u64 last)
{
	u64 range_last = iova + ((u64)npages << PAGE_SHIFT) - 1;

	return iova <= last && first <= range_last;
}

static bool hmdev_pin_overlaps(const struct hmdev_pin *pin, u64 first, u64 last)
{
	return hmdev_range_overlaps(pin->iova, pin->npages, first, last);
}

static bool hmdev_pin_of_cmd(const struct hmdev_pin *pin, u64 seq, u64 unused)
{
	return pin->seq == seq;
}

static bool hmdev_pin_any(const struct hmdev_pin *pin, u64 unused1, u64 unused2)
{
	return true;
}

/*
 * Put a batch on s->pins, busy, before its pages are pinned: -EFAULT if an unmap going on
 * covers any of it (the pin would race the unmap that waits for it).
 */
static int hmdev_pin_begin(struct hmdev_state *s, struct hmdev_pin *pin)
{
	struct hmdev_unmap_fence *fence;
	int ret = 0;

	spin_lock(&s->pin_lock);
	list_for_each_entry(fence, &s->unmap_fences, node) {
		if (hmdev_pin_overlaps(pin, fence->first, fence->last)) {
			ret = -EFAULT;
			break;
		}
	}
	if (!ret)
		list_add_tail(&pin->node, &s->pins);
	spin_unlock(&s->pin_lock);
	return ret;
}

/* Take a busy batch with no page pinned off s->pins, and tell .dma_unmap. */
static void hmdev_pin_end(struct hmdev_state *s, struct hmdev_pin *pin)
{
	spin_lock(&s->pin_lock);
	list_del(&pin->node);
	spin_unlock(&s->pin_lock);
	wake_up_all(&s->pin_wq);
	kfree(pin);
}

/* Unpin a busy batch the caller owns, then end it. */
static void hmdev_pin_release(struct hmdev_state *s, struct hmdev_pin *pin)
{
	vfio_unpin_pages(&s->vdev, pin->iova, pin->npages);
	spin_lock(&s->pin_lock);
	s->total_unpins += pin->npages;
	spin_unlock(&s->pin_lock);
	hmdev_pin_end(s, pin);
}

/* The command keeps its busy batch pinned: it is anybody's to unpin from now on. */
static void hmdev_pin_keep(struct hmdev_state *s, struct hmdev_pin *pin)
{
	spin_lock(&s->pin_lock);
	pin->state = HMDEV_PIN_KEPT;
	s->kept_pages += pin->npages;
	spin_unlock(&s->pin_lock);
	wake_up_all(&s->pin_wq);
}

/*
 * Claim the kept batches @match selects for unpinning: they turn busy (still on s->pins,
 * where .dma_unmap sees them until they are unpinned) and go on @out. Returns their pages.
 */
static unsigned long hmdev_claim_kept(struct hmdev_state *s, struct list_head *out,
				      bool (*match)(const struct hmdev_pin *pin, u64 a, u64 b),
				      u64 a, u64 b)
{
	struct hmdev_pin *pin;
	unsigned long pages = 0;

	lockdep_assert_held(&s->pin_lock);
	list_for_each_entry(pin, &s->pins, node) {
		if (pin->state != HMDEV_PIN_KEPT || !match(pin, a, b))
			continue;
		pin->state = HMDEV_PIN_BUSY;
		list_add_tail(&pin->claimed, out);
		pages += pin->npages;
	}
	s->kept_pages -= pages;
	return pages;
}

/* Unpin and end the batches claimed on @claimed. */
static void hmdev_release_claimed(struct hmdev_state *s, struct list_head *claimed)
{
	struct hmdev_pin *pin, *next;

	list_for_each_entry_safe(pin, next, claimed, claimed) {
		list_del(&pin->claimed);
		hmdev_pin_release(s, pin);
	}
}

/* Claim and unpin the kept batches @match selects; without s->pin_lock. */
static unsigned long hmdev_unpin_kept(struct hmdev_state *s,
				      bool (*match)(const struct hmdev_pin *pin, u64 a, u64 b),
				      u64 a, u64 b)
{
	LIST_HEAD(claimed);
	unsigned long pages;

	spin_lock(&s->pin_lock);
	pages = hmdev_claim_kept(s, &claimed, match, a, b);
	spin_unlock(&s->pin_lock);
	hmdev_release_claimed(s, &claimed);
	return pages;
}

/* Is a batch in [first, last] busy (being pinned, copied through or unpinned)? */
static bool hmdev_busy_overlaps_locked(struct hmdev_state *s, u64 first, u64 last)
{
	struct hmdev_pin *pin;

	lockdep_assert_held(&s->pin_lock);
	list_for_each_entry(pin, &s->pins, node)
		if (pin->state == HMDEV_PIN_BUSY && hmdev_pin_overlaps(pin, first, last))
			return true;
	return false;
}

static bool hmdev_busy_overlaps(struct hmdev_state *s, u64 first, u64 last)
{
	bool busy;

	spin_lock(&s->pin_lock);
	busy = hmdev_busy_overlaps_locked(s, first, last);
	spin_unlock(&s->pin_lock);
	return busy;
}

/*
 * Wait for the busy batches in [first, last] to end. Through iommufd nothing we wait for can
 * need a lock our caller holds, so the wait is as long as it takes (iommufd's change of IOAS
 * calls .dma_unmap once, and must find nothing pinned when it returns). Through type1 it is
 * bounded: false when HMDEV_UNMAP_WAIT passed, and type1 calls again.
 */
static bool hmdev_wait_not_busy(struct hmdev_state *s, u64 first, u64 last)
{
	if (hmdev_compat_iommufd_dma(&s->vdev)) {
		wait_event(s->pin_wq, !hmdev_busy_overlaps(s, first, last));
		return true;
	}
	return wait_event_timeout(s->pin_wq, !hmdev_busy_overlaps(s, first, last),
				  HMDEV_UNMAP_WAIT);
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
		struct hmdev_pin *pin;
		int ret;

		pin = kmalloc(sizeof(*pin), GFP_KERNEL);
		if (!pin)
			return -ENOMEM;
		pin->iova = page_iova;
		pin->npages = npages;
		pin->seq = c->seq;
		pin->state = HMDEV_PIN_BUSY;
		ret = hmdev_pin_begin(s, pin);
		if (ret) {
			kfree(pin);
			return ret;
		}
		ret = vfio_pin_pages(&s->vdev, page_iova, npages, prot, c->pages);
		if (ret != (int)npages) {
			/* Backends pin all or nothing; should one not, give back what it did. */
			if (ret > 0)
				vfio_unpin_pages(&s->vdev, page_iova, ret);
			hmdev_pin_end(s, pin);
			return ret < 0 ? ret : -EFAULT;
		}
		hmdev_reg_add32(s, HMDEV_REG_TOTAL_PINS, npages);

		hmdev_copy_pages(c->pages, off, buf, chunk, to_guest);

		if (c->keep)
			hmdev_pin_keep(s, pin);
		else
			hmdev_pin_release(s, pin);
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
	if (ret && c->keep)
		hmdev_unpin_kept(s, hmdev_pin_of_cmd, c->seq, 0);
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
	INIT_LIST_HEAD(&s->pins);
	INIT_LIST_HEAD(&s->unmap_fences);
}

void hmdev_dma_open(struct hmdev_state *s)
{
	lockdep_assert_held(&s->lock);
	spin_lock(&s->pin_lock);
	s->total_unpins = 0;
	s->unmap_calls = 0;
	spin_unlock(&s->pin_lock);
}

static bool hmdev_no_pins(struct hmdev_state *s)
{
	bool none;

	spin_lock(&s->pin_lock);
	none = list_empty(&s->pins);
	spin_unlock(&s->pin_lock);
	return none;
}

/*
 * Reset and close: unpin every kept batch, and wait for those a concurrent .dma_unmap is
 * unpinning (no command runs: we hold s->lock), so that nothing is pinned when we return: the
 * core unregisters the device from type1 after close, taking the locks such an unpin needs.
 */
void hmdev_dma_unpin_all(struct hmdev_state *s)
{
	lockdep_assert_held(&s->lock);
	hmdev_unpin_kept(s, hmdev_pin_any, 0, 0);
	wait_event(s->pin_wq, hmdev_no_pins(s));
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
 * pinned in it must be unpinned before we return. Runs without s->lock (see the top).
 */
void hmdev_dma_unmap(struct vfio_device *vdev, u64 iova, u64 length)
{
	struct hmdev_state *s = to_hmdev(vdev);
	struct hmdev_unmap_fence fence = { .first = iova };
	unsigned long unpinned = 0;

	if (!length)
		return;
	if (check_add_overflow(iova, length - 1, &fence.last))
		fence.last = U64_MAX;
	if (hmdev_faulty(HMDEV_FAULT_KEEP_PINS_ON_UNMAP))
		return;

	spin_lock(&s->pin_lock);
	list_add_tail(&fence.node, &s->unmap_fences);
	spin_unlock(&s->pin_lock);

	/*
	 * Busy batches end kept (unpin those, next round) or gone; none starts in the range.
	 * Whether one is busy is seen in the same hold of pin_lock as the kept ones are
	 * claimed, so a batch turning kept in between is never missed.
	 */
	for (;;) {
		LIST_HEAD(claimed);
		bool busy;

		spin_lock(&s->pin_lock);
		busy = hmdev_busy_overlaps_locked(s, fence.first, fence.last);
		unpinned += hmdev_claim_kept(s, &claimed, hmdev_pin_overlaps, fence.first,
					     fence.last);
		spin_unlock(&s->pin_lock);
		hmdev_release_claimed(s, &claimed);
		if (!busy)
			break;
		if (!hmdev_wait_not_busy(s, fence.first, fence.last))
			break;
	}

	spin_lock(&s->pin_lock);
	list_del(&fence.node);
	if (unpinned)
		s->unmap_calls++;
	spin_unlock(&s->pin_lock);
}
