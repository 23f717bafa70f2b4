// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio_harness_mdev: device memory, BAR2 (region 2). It is vmalloc_user() memory: read and
 * written through the device fd anywhere, mmap-able in its first half (announced by a
 * sparse-mmap capability), and the DMA engine's device side. Every path works on the same
 * kernel pages, so mmap, read/write and DMA see the same bytes.
 */
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vfio.h>
#include <linux/vmalloc.h>

#include "faults.h"
#include "hmdev.h"

static size_t hmdev_mmap_size(const struct hmdev_state *s)
{
	return s->mem_size / 2;
}

ssize_t hmdev_mem_rw(struct hmdev_state *s, char *buf, size_t count, loff_t pos,
		     bool write)
{
	lockdep_assert_held(&s->lock);
	if (pos < 0 || pos >= s->mem_size || count > s->mem_size - pos)
		return -EINVAL;
	if (write && hmdev_faulty(HMDEV_FAULT_MEM_OVERRUN))
		memset(s->mem + pos, 0xa5, count + PAGE_SIZE);
	else if (write)
		memcpy(s->mem + pos, buf, count);
	else
		memcpy(buf, s->mem + pos, count);
	return count;
}

/*
 * Called under mmap_lock, so it must not take s->lock (paths holding s->lock fault on user
 * memory); it reads only what never changes after probe.
 */
int hmdev_mem_mmap(struct hmdev_state *s, struct vm_area_struct *vma)
{
	unsigned long region_pages = HMDEV_REGION_OFFSET(1) >> PAGE_SHIFT;
	unsigned long pgoff = vma->vm_pgoff % region_pages;
	unsigned long mappable = hmdev_mmap_size(s) >> PAGE_SHIFT;
	unsigned long npages = vma_pages(vma);

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (!npages || pgoff >= mappable || npages > mappable - pgoff)
		return -EINVAL;
	return remap_vmalloc_range(vma, s->mem, pgoff);
}

int hmdev_mem_region_info(struct hmdev_state *s, struct vfio_region_info *info,
			  struct vfio_info_cap *caps)
{
	struct vfio_region_info_cap_sparse_mmap *sparse;
	size_t size = struct_size(sparse, areas, 1);
	int ret;

	info->offset = HMDEV_REGION_OFFSET(VFIO_PCI_BAR2_REGION_INDEX);
	info->size = s->mem_size;
	info->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
		      VFIO_REGION_INFO_FLAG_MMAP;

	sparse = kzalloc(size, GFP_KERNEL);
	if (!sparse)
		return -ENOMEM;
	sparse->header.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
	sparse->header.version = 1;
	sparse->nr_areas = 1;
	sparse->areas[0].offset = 0;
	sparse->areas[0].size = hmdev_mmap_size(s);
	ret = vfio_info_add_capability(caps, &sparse->header, size);
	kfree(sparse);
	return ret;
}
