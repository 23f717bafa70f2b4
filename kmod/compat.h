/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vfio_harness_mdev: every difference between the kernels the driver builds for (6.1, 6.12,
 * 7.2 and whatever lies between), in one place. The other files use only what is defined
 * here: HMDEV_HAVE_* feature flags (always defined, 0 or 1) and hmdev_compat_* helpers.
 *
 * Boundaries marked "~" are upstream releases inferred rather than read from tagged history.
 * Feature tests on a header's own macros are used where a feature brought one.
 */
#ifndef HMDEV_COMPAT_H
#define HMDEV_COMPAT_H

#include <linux/eventfd.h>
#include <linux/version.h>
#include <linux/vfio.h>

/*
 * The kernel's major.minor: no difference here depends on a stable sublevel. Built from
 * LINUX_VERSION_MAJOR/PATCHLEVEL (same information as the version code checkpatch warns
 * about, which is meant for in-tree code: an out-of-tree module must test versions).
 */
#define HMDEV_KERNEL	KERNEL_VERSION(LINUX_VERSION_MAJOR, LINUX_VERSION_PATCHLEVEL, 0)
#define HMDEV_KERNEL_AT_LEAST(major, minor)	(KERNEL_VERSION(major, minor, 0) <= HMDEV_KERNEL)

/* eventfd_signal() lost its count argument (~6.8). */
static inline void hmdev_compat_eventfd_signal(struct eventfd_ctx *ctx)
{
#if HMDEV_KERNEL_AT_LEAST(6, 8)
	eventfd_signal(ctx);
#else
	eventfd_signal(ctx, 1);
#endif
}

/*
 * 6.1: .release is mandatory and must end with vfio_free_device(); from 6.2 on the core
 * frees the device after .release, and vfio_free_device() is gone.
 */
static inline void hmdev_compat_free_device(struct vfio_device *vdev)
{
#if !HMDEV_KERNEL_AT_LEAST(6, 2)
	vfio_free_device(vdev);
#endif
}

/*
 * iommufd: emulated devices set .bind_iommufd, .unbind_iommufd and .attach_ioas (6.2) and
 * .detach_ioas (~6.6) to the vfio_iommufd_emulated_* helpers. Without CONFIG_IOMMUFD those
 * helpers are NULL casts in <linux/vfio.h>, so assigning them is always right.
 */
#if HMDEV_KERNEL_AT_LEAST(6, 2)
#define HMDEV_HAVE_IOMMUFD_OPS		1
#else
#define HMDEV_HAVE_IOMMUFD_OPS		0
#endif

/* Does the device reach user memory through iommufd (an access) rather than a container? */
static inline bool hmdev_compat_iommufd_dma(struct vfio_device *vdev)
{
#if HMDEV_HAVE_IOMMUFD_OPS
	return READ_ONCE(vdev->iommufd_access);
#else
	return false;
#endif
}

#if HMDEV_KERNEL_AT_LEAST(6, 6)
#define HMDEV_HAVE_DETACH_IOAS		1
#else
#define HMDEV_HAVE_DETACH_IOAS		0
#endif

/*
 * VFIO_DEVICE_GET_REGION_INFO (~6.19): the core copies the header in and out, builds the
 * capability chain and applies the argsz contract, and asks the driver through
 * .get_region_info_caps(vdev, info, caps); without that op the ioctl fails with EINVAL.
 * Before, the ioctl reaches the driver's .ioctl and the driver does all of it.
 */
#if HMDEV_KERNEL_AT_LEAST(6, 19)
#define HMDEV_HAVE_REGION_INFO_CAPS	1
#else
#define HMDEV_HAVE_REGION_INFO_CAPS	0
#endif

/*
 * Migration (for migration.c): PRE_COPY states and VFIO_MIG_GET_PRECOPY_INFO (6.2), and
 * .migration_get_data_size (6.2), mandatory with mig_ops from 6.12 on. Feature tests on
 * the UAPI header that came with each.
 */
#ifdef VFIO_MIGRATION_PRE_COPY
#define HMDEV_HAVE_PRE_COPY		1
#else
#define HMDEV_HAVE_PRE_COPY		0
#endif

#ifdef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
#define HMDEV_HAVE_MIG_DATA_SIZE	1
#else
#define HMDEV_HAVE_MIG_DATA_SIZE	0
#endif

/*
 * Class registration: class_create() lost its owner argument (~6.4) and class_register()
 * takes a const class from then on; a static, non-const struct class given to
 * class_register() builds on every version, so the driver needs no difference here.
 */

#endif /* HMDEV_COMPAT_H */
