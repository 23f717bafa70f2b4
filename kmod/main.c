// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio_harness_mdev: module init/exit, the virtual parent device, the mdev types and their
 * memory pool, probe/remove, and the vfio_device_ops that dispatch to the other files.
 */
#include <linux/device.h>
#include <linux/kernel.h>
#include <linux/math64.h>
#include <linux/mdev.h>
#include <linux/minmax.h>
#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <linux/uaccess.h>
#include <linux/vfio.h>
#include <linux/vmalloc.h>

#include "compat.h"
#include "faults.h"
#include "hmdev.h"

#define HMDEV_PARENT_NAME	"vfio_harness"
#define HMDEV_MAX_POOL_MIB	65536
#define HMDEV_MAX_INSTANCES	1024
#define HMDEV_RW_CHUNK		4096	/* BAR0 and config space fit in one chunk */

static unsigned int pool_mib = 64;
module_param(pool_mib, uint, 0444);
MODULE_PARM_DESC(pool_mib, "device memory shared by all instances, in MiB (default 64)");

static unsigned int max_instances = 8;
module_param(max_instances, uint, 0444);
MODULE_PARM_DESC(max_instances, "instances per mdev type at most (default 8)");

#ifdef HMDEV_FAULTS
unsigned int hmdev_fault;
module_param_named(fault, hmdev_fault, uint, 0644);
MODULE_PARM_DESC(fault, "TEST BUILD: deliberate bugs to inject (faults.h bits)");
/* `modinfo -F faults` tells a test build from the real one without loading it. */
MODULE_INFO(faults, "test build with deliberate bugs (kmod/faults.h)");
#endif

static struct hmdev_type hmdev_types[HMDEV_NR_TYPES] = {
	[HMDEV_TYPE_SMALL] = {
		.type.sysfs_name = "small",
		.type.pretty_name = "harness small",
		.index = HMDEV_TYPE_SMALL,
		.mem_size = SZ_1M,
		.description = "small device memory",
	},
	[HMDEV_TYPE_LARGE] = {
		.type.sysfs_name = "large",
		.type.pretty_name = "harness large",
		.index = HMDEV_TYPE_LARGE,
		.mem_size = SZ_8M,
		.description = "large device memory",
	},
};

static struct mdev_type *hmdev_mdev_types[HMDEV_NR_TYPES] = {
	&hmdev_types[HMDEV_TYPE_SMALL].type,
	&hmdev_types[HMDEV_TYPE_LARGE].type,
};

/* The memory pool and the per-type instance counts behind available_instances. */
static DEFINE_MUTEX(hmdev_pool_lock);
static u64 hmdev_pool_used;				/* bytes, under hmdev_pool_lock */
static unsigned int hmdev_instances[HMDEV_NR_TYPES];	/* under hmdev_pool_lock */

/*
 * The parent device's class name is what the mdev core puts in front of the type names
 * (dev_driver_string() of a device without bus or driver), hence vfio_harness_mdev-small.
 */
static struct class hmdev_class = {
	.name = HMDEV_NAME,
};

static struct device hmdev_parent_dev;
static struct mdev_parent hmdev_parent;

static unsigned int hmdev_available_locked(const struct hmdev_type *type)
{
	u64 pool = (u64)pool_mib * SZ_1M;
	u64 by_pool;

	lockdep_assert_held(&hmdev_pool_lock);
	if (hmdev_instances[type->index] >= max_instances || hmdev_pool_used >= pool)
		return 0;
	by_pool = div64_u64(pool - hmdev_pool_used, type->mem_size);
	return min_t(u64, max_instances - hmdev_instances[type->index], by_pool);
}

static int hmdev_pool_reserve(const struct hmdev_type *type)
{
	int ret = 0;

	mutex_lock(&hmdev_pool_lock);
	if (hmdev_available_locked(type)) {
		hmdev_pool_used += type->mem_size;
		hmdev_instances[type->index]++;
	} else {
		ret = -ENOSPC;
	}
	mutex_unlock(&hmdev_pool_lock);
	return ret;
}

static void hmdev_pool_release(const struct hmdev_type *type)
{
	mutex_lock(&hmdev_pool_lock);
	if (!WARN_ON(!hmdev_instances[type->index] || hmdev_pool_used < type->mem_size)) {
		hmdev_pool_used -= type->mem_size;
		hmdev_instances[type->index]--;
	}
	mutex_unlock(&hmdev_pool_lock);
}

/* Register helpers shared by every file: s->regs holds little-endian bytes. */
u32 hmdev_le32_at(const u8 *p)
{
	return (u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24;
}

u32 hmdev_reg_read32(const struct hmdev_state *s, unsigned int off)
{
	return hmdev_le32_at(s->regs + off);
}

void hmdev_reg_write32(struct hmdev_state *s, unsigned int off, u32 val)
{
	unsigned int i;

	for (i = 0; i < 4; i++)
		s->regs[off + i] = val >> (8 * i);
}

u64 hmdev_reg_read64(const struct hmdev_state *s, unsigned int off)
{
	return (u64)hmdev_reg_read32(s, off) | (u64)hmdev_reg_read32(s, off + 4) << 32;
}

void hmdev_reg_add32(struct hmdev_state *s, unsigned int off, u32 n)
{
	hmdev_reg_write32(s, off, hmdev_reg_read32(s, off) + n);
}

void hmdev_reset(struct hmdev_state *s)
{
	/* TOTAL_UNPINS and DMA_UNMAP_CALLS live in dma.c's pin bookkeeping, kept too */
	static const unsigned int kept[] = {
		HMDEV_REG_TOTAL_PINS,
		HMDEV_REG_RESET_COUNT,
		HMDEV_REG_BAR0_ACCESSES,
		HMDEV_REG_BAR2_TRAPPED,
	};
	u32 saved[ARRAY_SIZE(kept)];
	unsigned int i;

	lockdep_assert_held(&s->lock);
	hmdev_dma_unpin_all(s);
	for (i = 0; i < ARRAY_SIZE(kept); i++)
		saved[i] = hmdev_reg_read32(s, kept[i]);
	hmdev_regs_init(s);
	for (i = 0; i < ARRAY_SIZE(kept); i++)
		hmdev_reg_write32(s, kept[i], saved[i]);
	hmdev_reg_add32(s, HMDEV_REG_RESET_COUNT, 1);
	hmdev_irq_clear_pending(s);
}

/* vfio_device_ops */

static int hmdev_init_dev(struct vfio_device *vdev)
{
	struct hmdev_state *s = to_hmdev(vdev);
	struct mdev_device *mdev = to_mdev_device(vdev->dev);
	const struct hmdev_type *type = container_of(mdev->type, struct hmdev_type, type);
	int ret;

	ret = hmdev_pool_reserve(type);
	if (ret)
		return ret;
	s->mem = vmalloc_user(type->mem_size);
	if (!s->mem) {
		hmdev_pool_release(type);
		return -ENOMEM;
	}
	s->type = type;
	s->mem_size = type->mem_size;
	mutex_init(&s->lock);
	hmdev_dma_init(s);
	hmdev_config_init(s);
	hmdev_regs_init(s);
	hmdev_mig_setup(s);
	return 0;
}

/*
 * Give the device's memory back to the pool, once: at removal, or at release if the device
 * never got that far. A migration data fd may hold the vfio_device for long after removal
 * (its reads then fail with ENODEV), but not the device's place in available_instances.
 */
static void hmdev_give_back_memory(struct hmdev_state *s)
{
	if (!s->mem)
		return;
	vfree(s->mem);
	s->mem = NULL;
	hmdev_pool_release(s->type);
}

static void hmdev_release_dev(struct vfio_device *vdev)
{
	struct hmdev_state *s = to_hmdev(vdev);

	WARN_ON(!list_empty(&s->pins));
	hmdev_give_back_memory(s);
	mutex_destroy(&s->lock);
	hmdev_compat_free_device(vdev);
}

static int hmdev_open_device(struct vfio_device *vdev)
{
	struct hmdev_state *s = to_hmdev(vdev);

	mutex_lock(&s->lock);
	hmdev_config_init(s);
	hmdev_regs_init(s);
	hmdev_dma_open(s);
	hmdev_irq_clear_pending(s);
	s->open = true;
	mutex_unlock(&s->lock);
	return 0;
}

static void hmdev_close_device(struct vfio_device *vdev)
{
	struct hmdev_state *s = to_hmdev(vdev);

	mutex_lock(&s->lock);
	hmdev_mig_close(s);
	hmdev_dma_unpin_all(s);
	hmdev_irq_release_all(s);
	s->open = false;
	mutex_unlock(&s->lock);
}

/* Which region a file position falls in, its size, and the offset inside it. */
static int hmdev_region_of(struct hmdev_state *s, loff_t pos, unsigned int *index,
			   size_t *size, loff_t *off)
{
	if (pos < 0)
		return -EINVAL;
	*index = (u64)pos >> HMDEV_REGION_SHIFT;
	*off = pos & HMDEV_REGION_MASK;
	switch (*index) {
	case VFIO_PCI_CONFIG_REGION_INDEX:
		*size = HMDEV_CONFIG_SIZE;
		return 0;
	case VFIO_PCI_BAR0_REGION_INDEX:
		*size = HMDEV_BAR0_SIZE;
		return 0;
	case VFIO_PCI_BAR2_REGION_INDEX:
		*size = s->mem_size;
		return 0;
	default:
		return -EINVAL;
	}
}

/* @first: the access's first chunk, where the access counters count it */
static ssize_t hmdev_region_chunk(struct hmdev_state *s, unsigned int index, char *buf,
				  size_t count, loff_t off, bool write, bool first)
{
	ssize_t ret;

	mutex_lock(&s->lock);
	switch (index) {
	case VFIO_PCI_CONFIG_REGION_INDEX:
		ret = hmdev_config_rw(s, buf, count, off, write);
		break;
	case VFIO_PCI_BAR0_REGION_INDEX:
		if (first)
			hmdev_reg_add32(s, HMDEV_REG_BAR0_ACCESSES, 1);
		ret = hmdev_bar0_rw(s, buf, count, off, write);
		break;
	case VFIO_PCI_BAR2_REGION_INDEX:
		if (first)
			hmdev_reg_add32(s, HMDEV_REG_BAR2_TRAPPED, 1);
		ret = hmdev_mem_rw(s, buf, count, off, write);
		break;
	default:
		ret = -EINVAL;
		break;
	}
	mutex_unlock(&s->lock);
	return ret;
}

/*
 * read(2)/write(2) on the device fd. The whole access must fit in one region (else EINVAL);
 * it is copied through a bounce buffer in chunks, so that no user memory is touched with
 * s->lock held. BAR0 and config space always take a single chunk, so a write's side effects
 * see all of its bytes at once.
 */
static ssize_t hmdev_rw(struct vfio_device *vdev, char __user *ubuf, size_t count,
			loff_t *ppos, bool write)
{
	struct hmdev_state *s = to_hmdev(vdev);
	unsigned int index;
	size_t size, done = 0;
	loff_t off;
	char *buf;
	int ret;

	ret = hmdev_region_of(s, *ppos, &index, &size, &off);
	if (ret)
		return ret;
	if (off >= size || count > size - off)
		return -EINVAL;
	if (!count)
		return 0;

	buf = kmalloc(min_t(size_t, count, HMDEV_RW_CHUNK), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	while (done < count) {
		size_t chunk = min_t(size_t, count - done, HMDEV_RW_CHUNK);
		ssize_t n;

		if (write && copy_from_user(buf, ubuf + done, chunk)) {
			ret = -EFAULT;
			break;
		}
		n = hmdev_region_chunk(s, index, buf, chunk, off + done, write, !done);
		if (n < 0) {
			ret = n;
			break;
		}
		if (!write && copy_to_user(ubuf + done, buf, chunk)) {
			ret = -EFAULT;
			break;
		}
		done += chunk;
	}
	kfree(buf);
	if (ret)
		return ret;
	*ppos += done;
	return done;
}

static ssize_t hmdev_read(struct vfio_device *vdev, char __user *buf, size_t count,
			  loff_t *ppos)
{
	return hmdev_rw(vdev, buf, count, ppos, false);
}

static ssize_t hmdev_write(struct vfio_device *vdev, const char __user *buf, size_t count,
			   loff_t *ppos)
{
	return hmdev_rw(vdev, (char __user *)buf, count, ppos, true);
}

static int hmdev_mmap(struct vfio_device *vdev, struct vm_area_struct *vma)
{
	struct hmdev_state *s = to_hmdev(vdev);
	unsigned long region_pages = HMDEV_REGION_OFFSET(1) >> PAGE_SHIFT;

	if (vma->vm_pgoff / region_pages != VFIO_PCI_BAR2_REGION_INDEX)
		return -EINVAL;
	return hmdev_mem_mmap(s, vma);
}

/*
 * VFIO_DEVICE_GET_REGION_INFO for one of the 9 vfio-pci regions: BAR0, BAR2 and config
 * space exist, every other index reads as size 0. Called by the core on kernels that
 * handle the ioctl themselves, else by hmdev_ioctl_region_info() below.
 */
static int hmdev_get_region_info_caps(struct vfio_device *vdev, struct vfio_region_info *info,
				      struct vfio_info_cap *caps)
{
	struct hmdev_state *s = to_hmdev(vdev);

	if (info->index >= VFIO_PCI_NUM_REGIONS)
		return -EINVAL;
	info->offset = HMDEV_REGION_OFFSET(info->index);
	info->size = 0;
	info->flags = 0;
	switch (info->index) {
	case VFIO_PCI_CONFIG_REGION_INDEX:
		info->size = HMDEV_CONFIG_SIZE;
		info->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
		break;
	case VFIO_PCI_BAR0_REGION_INDEX:
		info->size = HMDEV_BAR0_SIZE;
		info->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
		break;
	case VFIO_PCI_BAR2_REGION_INDEX:
		return hmdev_mem_region_info(s, info, caps);
	default:
		break;
	}
	return 0;
}

#if !HMDEV_HAVE_REGION_INFO_CAPS
/* What newer cores do for the driver: the argsz contract and the capability chain. */
static long hmdev_ioctl_region_info(struct vfio_device *vdev, void __user *arg)
{
	unsigned long minsz = offsetofend(struct vfio_region_info, offset);
	struct vfio_info_cap caps = { .buf = NULL, .size = 0 };
	struct vfio_region_info info = {};
	int ret;

	if (copy_from_user(&info, arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz)
		return -EINVAL;
	ret = hmdev_get_region_info_caps(vdev, &info, &caps);
	if (ret)
		goto out;
	info.cap_offset = 0;
	if (caps.size) {
		info.flags |= VFIO_REGION_INFO_FLAG_CAPS;
		if (info.argsz < sizeof(info) + caps.size) {
			info.argsz = sizeof(info) + caps.size;
		} else {
			vfio_info_cap_shift(&caps, sizeof(info));
			if (copy_to_user(arg + sizeof(info), caps.buf, caps.size)) {
				ret = -EFAULT;
				goto out;
			}
			info.cap_offset = sizeof(info);
		}
	}
	if (copy_to_user(arg, &info, minsz))
		ret = -EFAULT;
out:
	kfree(caps.buf);
	return ret;
}
#endif

static long hmdev_ioctl_device_info(void __user *arg)
{
	unsigned long minsz = offsetofend(struct vfio_device_info, num_irqs);
	struct vfio_device_info info;

	if (copy_from_user(&info, arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz)
		return -EINVAL;
	info.flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
	info.num_regions = VFIO_PCI_NUM_REGIONS;
	info.num_irqs = VFIO_PCI_NUM_IRQS;
	return copy_to_user(arg, &info, minsz) ? -EFAULT : 0;
}

static u32 hmdev_irq_count(unsigned int index)
{
	switch (index) {
	case VFIO_PCI_INTX_IRQ_INDEX:
	case VFIO_PCI_MSI_IRQ_INDEX:
	case VFIO_PCI_ERR_IRQ_INDEX:
	case VFIO_PCI_REQ_IRQ_INDEX:
		return 1;
	default:
		return 0;
	}
}

static long hmdev_ioctl_irq_info(void __user *arg)
{
	unsigned long minsz = offsetofend(struct vfio_irq_info, count);
	struct vfio_irq_info info;

	if (copy_from_user(&info, arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz || info.index >= VFIO_PCI_NUM_IRQS)
		return -EINVAL;
	info.flags = VFIO_IRQ_INFO_EVENTFD;
	if (info.index == VFIO_PCI_INTX_IRQ_INDEX)
		info.flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
	else
		info.flags |= VFIO_IRQ_INFO_NORESIZE;
	info.count = hmdev_irq_count(info.index);
	return copy_to_user(arg, &info, minsz) ? -EFAULT : 0;
}

static long hmdev_ioctl_set_irqs(struct hmdev_state *s, void __user *arg)
{
	unsigned long minsz = offsetofend(struct vfio_irq_set, count);
	struct vfio_irq_set hdr;
	size_t data_size = 0;
	void *data = NULL;
	int ret;

	if (copy_from_user(&hdr, arg, minsz))
		return -EFAULT;
	ret = vfio_set_irqs_validate_and_prepare(&hdr, hmdev_irq_count(hdr.index),
						 VFIO_PCI_NUM_IRQS, &data_size);
	if (ret)
		return ret;
	if (data_size) {
		data = memdup_user(arg + minsz, data_size);
		if (IS_ERR(data))
			return PTR_ERR(data);
	}
	mutex_lock(&s->lock);
	ret = hmdev_set_irqs(s, &hdr, data);
	mutex_unlock(&s->lock);
	kfree(data);
	return ret;
}

static long hmdev_ioctl(struct vfio_device *vdev, unsigned int cmd, unsigned long arg)
{
	struct hmdev_state *s = to_hmdev(vdev);
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case VFIO_DEVICE_GET_INFO:
		return hmdev_ioctl_device_info(uarg);
#if !HMDEV_HAVE_REGION_INFO_CAPS
	case VFIO_DEVICE_GET_REGION_INFO:
		return hmdev_ioctl_region_info(vdev, uarg);
#endif
	case VFIO_DEVICE_GET_IRQ_INFO:
		return hmdev_ioctl_irq_info(uarg);
	case VFIO_DEVICE_SET_IRQS:
		return hmdev_ioctl_set_irqs(s, uarg);
	case VFIO_DEVICE_RESET:
		/* A reset also ends any migration session and returns the device to RUNNING. */
		mutex_lock(&s->lock);
		hmdev_mig_close(s);
		hmdev_reset(s);
		mutex_unlock(&s->lock);
		WARN_ON(hmdev_faulty(HMDEV_FAULT_WARN_ON_RESET));
		if (hmdev_faulty(HMDEV_FAULT_LEAK_ON_RESET))
			hmdev_leak(256);
		return 0;
	default:
		return -ENOTTY;
	}
}

/* The device is being removed while user space holds it open: ask for it back. */
static void hmdev_request(struct vfio_device *vdev, unsigned int count)
{
	struct hmdev_state *s = to_hmdev(vdev);

	mutex_lock(&s->lock);
	if (s->irqs[VFIO_PCI_REQ_IRQ_INDEX].trigger)
		hmdev_irq_signal(s, VFIO_PCI_REQ_IRQ_INDEX);
	else if (!count)
		dev_notice(vdev->dev, "removal waits for user space to close the device\n");
	mutex_unlock(&s->lock);
}

static const struct vfio_device_ops hmdev_dev_ops = {
	.name = HMDEV_NAME,
	.init = hmdev_init_dev,
	.release = hmdev_release_dev,
	.open_device = hmdev_open_device,
	.close_device = hmdev_close_device,
	.read = hmdev_read,
	.write = hmdev_write,
	.ioctl = hmdev_ioctl,
	.mmap = hmdev_mmap,
	.request = hmdev_request,
	.dma_unmap = hmdev_dma_unmap,
#if HMDEV_HAVE_REGION_INFO_CAPS
	.get_region_info_caps = hmdev_get_region_info_caps,
#endif
#if HMDEV_HAVE_IOMMUFD_OPS
	.bind_iommufd = vfio_iommufd_emulated_bind,
	.unbind_iommufd = vfio_iommufd_emulated_unbind,
	.attach_ioas = vfio_iommufd_emulated_attach_ioas,
#endif
#if HMDEV_HAVE_DETACH_IOAS
	.detach_ioas = vfio_iommufd_emulated_detach_ioas,
#endif
};

/* mdev driver */

static int hmdev_probe(struct mdev_device *mdev)
{
	struct hmdev_state *s;
	int ret;

	s = vfio_alloc_device(hmdev_state, vdev, &mdev->dev, &hmdev_dev_ops);
	if (IS_ERR(s))
		return PTR_ERR(s);
	ret = vfio_register_emulated_iommu_dev(&s->vdev);
	if (ret) {
		vfio_put_device(&s->vdev);
		return ret;
	}
	dev_set_drvdata(&mdev->dev, s);
	return 0;
}

static void hmdev_remove(struct mdev_device *mdev)
{
	struct hmdev_state *s = dev_get_drvdata(&mdev->dev);

	/* Waits until every device fd is closed: nothing reaches s->mem after it. */
	vfio_unregister_group_dev(&s->vdev);
	hmdev_give_back_memory(s);
	vfio_put_device(&s->vdev);
}

static unsigned int hmdev_get_available(struct mdev_type *mtype)
{
	const struct hmdev_type *type = container_of(mtype, struct hmdev_type, type);
	unsigned int n;

	mutex_lock(&hmdev_pool_lock);
	n = hmdev_available_locked(type);
	mutex_unlock(&hmdev_pool_lock);
	return n;
}

static ssize_t hmdev_show_description(struct mdev_type *mtype, char *buf)
{
	const struct hmdev_type *type = container_of(mtype, struct hmdev_type, type);

	return sysfs_emit(buf, "%s\n", type->description);
}

static struct mdev_driver hmdev_driver = {
	.device_api = VFIO_DEVICE_API_PCI_STRING,
	.driver = {
		.name = HMDEV_NAME,
		.owner = THIS_MODULE,
		.mod_name = KBUILD_MODNAME,
	},
	.probe = hmdev_probe,
	.remove = hmdev_remove,
	.get_available = hmdev_get_available,
	.show_description = hmdev_show_description,
};

/* The parent device is static: nothing to free when its last reference goes. */
static void hmdev_parent_release(struct device *dev)
{
}

static int __init hmdev_module_init(void)
{
	int ret;

	if (!pool_mib || pool_mib > HMDEV_MAX_POOL_MIB) {
		pr_err(HMDEV_NAME ": pool_mib must be 1..%u\n", HMDEV_MAX_POOL_MIB);
		return -EINVAL;
	}
	if (!max_instances || max_instances > HMDEV_MAX_INSTANCES) {
		pr_err(HMDEV_NAME ": max_instances must be 1..%u\n", HMDEV_MAX_INSTANCES);
		return -EINVAL;
	}

	ret = mdev_register_driver(&hmdev_driver);
	if (ret)
		return ret;
	ret = class_register(&hmdev_class);
	if (ret)
		goto err_driver;

	hmdev_parent_dev.class = &hmdev_class;
	hmdev_parent_dev.release = hmdev_parent_release;
	dev_set_name(&hmdev_parent_dev, "%s", HMDEV_PARENT_NAME);
	ret = device_register(&hmdev_parent_dev);
	if (ret) {
		put_device(&hmdev_parent_dev);
		goto err_class;
	}

	ret = mdev_register_parent(&hmdev_parent, &hmdev_parent_dev, &hmdev_driver,
				   hmdev_mdev_types, ARRAY_SIZE(hmdev_mdev_types));
	if (ret)
		goto err_device;
	return 0;

err_device:
	device_unregister(&hmdev_parent_dev);
err_class:
	class_unregister(&hmdev_class);
err_driver:
	mdev_unregister_driver(&hmdev_driver);
	return ret;
}

static void __exit hmdev_module_exit(void)
{
	mdev_unregister_parent(&hmdev_parent);
	device_unregister(&hmdev_parent_dev);
	class_unregister(&hmdev_class);
	mdev_unregister_driver(&hmdev_driver);
}

module_init(hmdev_module_init);
module_exit(hmdev_module_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vfio-harness reference mdev device (vfio-pci, DMA engine, device memory)");
MODULE_AUTHOR("vfio-harness");
