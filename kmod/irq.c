// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio_harness_mdev: interrupts. INTx (level, auto-masked when it fires), MSI (1 vector),
 * ERR and REQ, each delivered through an eventfd that user space attaches with
 * VFIO_DEVICE_SET_IRQS, plus the loopback triggers DATA_NONE and DATA_BOOL.
 *
 * The device's interrupt line is (IRQ_STATUS & IRQ_MASK) != 0. While the MSI capability is
 * enabled, a newly raised source that is unmasked signals the MSI eventfd. Otherwise the line
 * drives INTx: when it is asserted, INTx is unmasked and not disabled in the command register,
 * the INTx eventfd is signalled and INTx masks itself until SET_IRQS unmasks it; unmasking
 * with the line still asserted fires again, as a level-triggered interrupt does.
 *
 * A device that migration stopped (STOP, STOP_COPY, RESUMING, the P2P states) signals
 * nothing: attaching an INTx eventfd, UNMASK or clearing INTx disable in the command register
 * with the line asserted fire only once the device runs again. Loopback triggers are user
 * space's own and fire in any state.
 */
#include <linux/bitops.h>
#include <linux/eventfd.h>
#include <linux/vfio.h>

#include "compat.h"
#include "hmdev.h"

void hmdev_irq_signal(struct hmdev_state *s, unsigned int index)
{
	struct eventfd_ctx *trigger = s->irqs[index].trigger;

	if (trigger)
		hmdev_compat_eventfd_signal(trigger);
}

static bool hmdev_line_asserted(const struct hmdev_state *s)
{
	return hmdev_reg_read32(s, HMDEV_REG_IRQ_STATUS) &
	       hmdev_reg_read32(s, HMDEV_REG_IRQ_MASK);
}

bool hmdev_irq_intx_pending(const struct hmdev_state *s)
{
	return !hmdev_config_msi_enabled(s) && hmdev_line_asserted(s);
}

void hmdev_irq_update(struct hmdev_state *s)
{
	struct hmdev_irq *intx = &s->irqs[VFIO_PCI_INTX_IRQ_INDEX];

	lockdep_assert_held(&s->lock);
	/* A stopped device signals nothing; leaving STOP calls us again (migration.c). */
	if (!hmdev_mig_running(s))
		return;
	if (hmdev_config_msi_enabled(s) || hmdev_config_intx_disabled(s))
		return;
	if (!intx->trigger || intx->masked || !hmdev_line_asserted(s))
		return;
	hmdev_compat_eventfd_signal(intx->trigger);
	intx->masked = true;
}

void hmdev_irq_raise(struct hmdev_state *s, u32 status_bits)
{
	lockdep_assert_held(&s->lock);
	if (hmdev_config_msi_enabled(s)) {
		if (status_bits & hmdev_reg_read32(s, HMDEV_REG_IRQ_MASK))
			hmdev_irq_signal(s, VFIO_PCI_MSI_IRQ_INDEX);
		return;
	}
	hmdev_irq_update(s);
}

void hmdev_irq_clear_pending(struct hmdev_state *s)
{
	s->irqs[VFIO_PCI_INTX_IRQ_INDEX].masked = false;
}

static void hmdev_irq_detach(struct hmdev_state *s, unsigned int index)
{
	struct hmdev_irq *irq = &s->irqs[index];

	if (irq->trigger) {
		eventfd_ctx_put(irq->trigger);
		irq->trigger = NULL;
	}
	if (index == VFIO_PCI_INTX_IRQ_INDEX)
		irq->masked = false;
	if (index == VFIO_PCI_MSI_IRQ_INDEX) {
		irq->enabled = false;
		hmdev_config_set_msi_enable(s, false);
	}
}

void hmdev_irq_release_all(struct hmdev_state *s)
{
	unsigned int i;

	lockdep_assert_held(&s->lock);
	for (i = 0; i < VFIO_PCI_NUM_IRQS; i++)
		hmdev_irq_detach(s, i);
}

static int hmdev_irq_attach(struct hmdev_state *s, unsigned int index, s32 fd)
{
	struct hmdev_irq *irq = &s->irqs[index];
	struct eventfd_ctx *trigger;

	if (fd == -1) {
		hmdev_irq_detach(s, index);
		return 0;
	}
	if (fd < 0)
		return -EINVAL;
	trigger = eventfd_ctx_fdget(fd);
	if (IS_ERR(trigger))
		return PTR_ERR(trigger);
	if (irq->trigger)
		eventfd_ctx_put(irq->trigger);
	irq->trigger = trigger;
	if (index == VFIO_PCI_MSI_IRQ_INDEX) {
		irq->enabled = true;
		hmdev_config_set_msi_enable(s, true);
	}
	/* A fresh INTx eventfd sees a line that is already asserted. */
	if (index == VFIO_PCI_INTX_IRQ_INDEX)
		hmdev_irq_update(s);
	return 0;
}

/* ACTION_TRIGGER on an index with one vector: attach, detach, or loop back. */
static int hmdev_irq_trigger(struct hmdev_state *s, unsigned int index, u32 count,
			     u32 data_type, const void *data)
{
	switch (data_type) {
	case VFIO_IRQ_SET_DATA_NONE:
		if (count)
			hmdev_irq_signal(s, index);
		else
			hmdev_irq_detach(s, index);
		return 0;
	case VFIO_IRQ_SET_DATA_BOOL:
		if (!count)
			return -EINVAL;
		if (*(const u8 *)data)
			hmdev_irq_signal(s, index);
		return 0;
	case VFIO_IRQ_SET_DATA_EVENTFD:
		if (!count)
			return -EINVAL;
		return hmdev_irq_attach(s, index, *(const s32 *)data);
	default:
		return -EINVAL;
	}
}

/* ACTION_MASK / ACTION_UNMASK: INTx only, one vector, DATA_NONE or DATA_BOOL. */
static int hmdev_irq_mask(struct hmdev_state *s, u32 count, u32 data_type, const void *data,
			  bool mask)
{
	struct hmdev_irq *intx = &s->irqs[VFIO_PCI_INTX_IRQ_INDEX];

	if (count != 1)
		return -EINVAL;
	if (data_type == VFIO_IRQ_SET_DATA_EVENTFD)
		return -ENOTTY;	/* no unmask-by-eventfd (irqfd resampler) on this device */
	if (data_type == VFIO_IRQ_SET_DATA_BOOL && !*(const u8 *)data)
		return 0;
	intx->masked = mask;
	if (!mask)
		hmdev_irq_update(s);
	return 0;
}

/*
 * VFIO_DEVICE_SET_IRQS, after vfio_set_irqs_validate_and_prepare() has checked index,
 * start, count, flags and the size of @data. Not exactly one action bit or one data type:
 * EINVAL. As in vfio-pci, an action the index does not support (MASK or UNMASK on anything
 * but INTx) is ENOTTY.
 */
int hmdev_set_irqs(struct hmdev_state *s, struct vfio_irq_set *hdr, void *data)
{
	u32 action = hdr->flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
	u32 data_type = hdr->flags & VFIO_IRQ_SET_DATA_TYPE_MASK;

	lockdep_assert_held(&s->lock);
	if (hdr->index >= VFIO_PCI_NUM_IRQS || hdr->index == VFIO_PCI_MSIX_IRQ_INDEX ||
	    hdr->start != 0 || hdr->count > 1)
		return -EINVAL;
	if (hweight32(data_type) != 1 || hweight32(action) != 1)
		return -EINVAL;
	if (data_type != VFIO_IRQ_SET_DATA_NONE && hdr->count && !data)
		return -EINVAL;

	switch (action) {
	case VFIO_IRQ_SET_ACTION_TRIGGER:
		return hmdev_irq_trigger(s, hdr->index, hdr->count, data_type, data);
	case VFIO_IRQ_SET_ACTION_MASK:
	case VFIO_IRQ_SET_ACTION_UNMASK:
		if (hdr->index != VFIO_PCI_INTX_IRQ_INDEX)
			return -ENOTTY;
		return hmdev_irq_mask(s, hdr->count, data_type, data,
				      action == VFIO_IRQ_SET_ACTION_MASK);
	default:
		return -ENOTTY;
	}
}
