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
 * Locking: the whole command runs with s->lock held, so .dma_unmap (which takes s->lock)
 * never sees a half-done command; the pages a command pins and does not keep are unpinned
 * before s->lock is dropped. The IOMMU backends call .dma_unmap without holding the locks
 * that vfio_pin_pages takes (type1 drops iommu->lock around the notification, iommufd its
 * IOVA rwsem), so pinning under s->lock cannot deadlock against an unmap. A failed command
 * unpins every page it pinned, kept or not.
 *
 * Waiting in .dma_unmap for a running command is what makes an unmap safe: type1 retries
 * an unmap whose range still has pinned pages only ten times before it BUG()s, so pins must
 * be gone when .dma_unmap returns. The cost, shared with every pinning mdev driver (kvmgt
 * holds its cache lock across vfio_pin_pages the same way): type1 notifies with its
 * device_list_lock held, and attaching another device to the same container takes iommu->lock
 * then device_list_lock, so a DMA, an unmap and a device open racing in one container form
 * a lock cycle in theory (s->lock -> iommu->lock -> device_list_lock -> s->lock).
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
	struct list_head pins;	/* struct hmdev_kept_pin: this command's pins while kept */
	unsigned long npinned;	/* pages on @pins */
	struct page **pages;	/* HMDEV_PIN_BATCH entries for vfio_pin_pages() */
};

/* Pages spanned by [iova, iova + len), len > 0. */
static unsigned long hmdev_span_pages(u64 iova, u32 len)
{
	return (offset_in_page(iova) + (u64)len + PAGE_SIZE - 1) >> PAGE_SHIFT;
}

static void hmdev_unpin(struct hmdev_state *s, dma_addr_t iova, unsigned long npages)
{
	vfio_unpin_pages(&s->vdev, iova, npages);
	hmdev_reg_add32(s, HMDEV_REG_TOTAL_UNPINS, npages);
}

static void hmdev_set_pinned_pages(struct hmdev_state *s)
{
	hmdev_reg_write32(s, HMDEV_REG_PINNED_PAGES, s->kept_pages);
}

static void hmdev_unpin_list(struct hmdev_state *s, struct list_head *list)
{
	struct hmdev_kept_pin *pin, *next;

	list_for_each_entry_safe(pin, next, list, node) {
		hmdev_unpin(s, pin->iova, pin->npages);
		list_del(&pin->node);
		kfree(pin);
	}
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
		}
		ret = vfio_pin_pages(&s->vdev, page_iova, npages, prot, c->pages);
		if (ret != (int)npages) {
			kfree(pin);
			/* Backends pin all or nothing; should one not, give back what it did. */
			if (ret > 0)
				vfio_unpin_pages(&s->vdev, page_iova, ret);
			return ret < 0 ? ret : -EFAULT;
		}
		hmdev_reg_add32(s, HMDEV_REG_TOTAL_PINS, npages);

		hmdev_copy_pages(c->pages, off, buf, chunk, to_guest);

		if (pin) {
			pin->iova = page_iova;
			pin->npages = npages;
			list_add_tail(&pin->node, &c->pins);
			c->npinned += npages;
		} else {
			hmdev_unpin(s, page_iova, npages);
		}
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
	if (c->keep && s->kept_pages + need > HMDEV_MAX_KEPT_PAGES)
		return -ENOSPC;
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
	if (ret) {
		hmdev_unpin_list(s, &c->pins);
		return ret;
	}
	list_splice_tail_init(&c->pins, &s->kept_pins);
	s->kept_pages += c->npinned;
	hmdev_set_pinned_pages(s);
	return 0;
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
	INIT_LIST_HEAD(&c.pins);
	c.keep = c.cmd & HMDEV_DMA_KEEP_PINNED;
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

void hmdev_dma_unpin_all(struct hmdev_state *s)
{
	lockdep_assert_held(&s->lock);
	hmdev_unpin_list(s, &s->kept_pins);
	s->kept_pages = 0;
	hmdev_set_pinned_pages(s);
}

/* Does the kept range overlap [iova, last]? */
static bool hmdev_pin_overlaps(const struct hmdev_kept_pin *pin, u64 iova, u64 last)
{
	u64 pin_last = pin->iova + ((u64)pin->npages << PAGE_SHIFT) - 1;

	return pin->iova <= last && iova <= pin_last;
}

/*
 * .dma_unmap: user space is unmapping [iova, iova + length) from the IOMMU; every page we
 * keep pinned in it must be unpinned before we return.
 */
void hmdev_dma_unmap(struct vfio_device *vdev, u64 iova, u64 length)
{
	struct hmdev_state *s = to_hmdev(vdev);
	struct hmdev_kept_pin *pin, *next;
	unsigned long unpinned = 0;
	u64 last;

	if (!length)
		return;
	if (check_add_overflow(iova, length - 1, &last))
		last = U64_MAX;

	mutex_lock(&s->lock);
	if (hmdev_faulty(HMDEV_FAULT_KEEP_PINS_ON_UNMAP)) {
		mutex_unlock(&s->lock);
		return;
	}
	list_for_each_entry_safe(pin, next, &s->kept_pins, node) {
		if (!hmdev_pin_overlaps(pin, iova, last))
			continue;
		hmdev_unpin(s, pin->iova, pin->npages);
		unpinned += pin->npages;
		list_del(&pin->node);
		kfree(pin);
	}
	if (unpinned) {
		s->kept_pages -= unpinned;
		hmdev_set_pinned_pages(s);
		hmdev_reg_add32(s, HMDEV_REG_DMA_UNMAP_CALLS, 1);
	}
	mutex_unlock(&s->lock);
}
