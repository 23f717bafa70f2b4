// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio_harness_mdev: the emulated PCI config space (region 7, 256 bytes).
 *
 * Every byte has a value and a mask of the bits user space may change; a write of any size
 * merges its bytes through that mask. BAR sizing falls out of it: a BAR's writable bits are
 * its address bits, so writing all ones reads back the size mask with the flag bits.
 * PCI_STATUS_INTERRUPT is live: set while the INTx line is asserted (MSI off), whether or not
 * the command register disables INTx, so that a guest driver sharing the line can tell
 * whether the interrupt is ours.
 */
#include <linux/pci_regs.h>
#include <linux/string.h>

#include "hmdev.h"

#define HMDEV_MSI		HMDEV_PCI_MSI_CAP_OFFSET
#define HMDEV_MSI_ADDR_LO	(HMDEV_MSI + PCI_MSI_ADDRESS_LO)
#define HMDEV_MSI_ADDR_HI	(HMDEV_MSI + PCI_MSI_ADDRESS_HI)
#define HMDEV_MSI_DATA		(HMDEV_MSI + PCI_MSI_DATA_64)
#define HMDEV_BAR2_FLAGS	(PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64 | \
				 PCI_BASE_ADDRESS_MEM_PREFETCH)

static void hmdev_cfg_put16(u8 *cfg, unsigned int off, u16 val)
{
	cfg[off] = val;
	cfg[off + 1] = val >> 8;
}

static void hmdev_cfg_put32(u8 *cfg, unsigned int off, u32 val)
{
	hmdev_cfg_put16(cfg, off, val);
	hmdev_cfg_put16(cfg, off + 2, val >> 16);
}

/* The bits of config byte @off that user space may change. */
static u8 hmdev_config_wmask(const struct hmdev_state *s, unsigned int off)
{
	switch (off) {
	case PCI_COMMAND:
		return PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	case PCI_COMMAND + 1:
		return PCI_COMMAND_INTX_DISABLE >> 8;
	case PCI_BASE_ADDRESS_0 ... PCI_BASE_ADDRESS_0 + 3:
		return s->bar0_addr_mask >> (8 * (off - PCI_BASE_ADDRESS_0));
	case PCI_BASE_ADDRESS_2 ... PCI_BASE_ADDRESS_2 + 7:
		return s->bar2_addr_mask >> (8 * (off - PCI_BASE_ADDRESS_2));
	case PCI_INTERRUPT_LINE:
		return 0xff;
	case HMDEV_MSI + PCI_MSI_FLAGS:
		return PCI_MSI_FLAGS_ENABLE;
	case HMDEV_MSI_ADDR_LO:
		return 0xfc;	/* dword aligned */
	case HMDEV_MSI_ADDR_LO + 1 ... HMDEV_MSI_ADDR_HI + 3:
	case HMDEV_MSI_DATA ... HMDEV_MSI_DATA + 1:
		return 0xff;
	default:
		return 0;
	}
}

void hmdev_config_init(struct hmdev_state *s)
{
	u8 *cfg = s->config;

	memset(cfg, 0, HMDEV_CONFIG_SIZE);
	hmdev_cfg_put16(cfg, PCI_VENDOR_ID, HMDEV_PCI_VENDOR_ID);
	hmdev_cfg_put16(cfg, PCI_DEVICE_ID, HMDEV_PCI_DEVICE_ID);
	hmdev_cfg_put16(cfg, PCI_STATUS, PCI_STATUS_CAP_LIST);
	hmdev_cfg_put32(cfg, PCI_CLASS_REVISION, HMDEV_PCI_CLASS << 8 | HMDEV_PCI_REVISION);
	hmdev_cfg_put32(cfg, PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_SPACE_MEMORY |
			PCI_BASE_ADDRESS_MEM_TYPE_32);
	hmdev_cfg_put32(cfg, PCI_BASE_ADDRESS_2, HMDEV_BAR2_FLAGS);
	hmdev_cfg_put16(cfg, PCI_SUBSYSTEM_VENDOR_ID, HMDEV_PCI_VENDOR_ID);
	hmdev_cfg_put16(cfg, PCI_SUBSYSTEM_ID, s->type->index + 1);
	cfg[PCI_CAPABILITY_LIST] = HMDEV_MSI;
	cfg[PCI_INTERRUPT_PIN] = 1;	/* INTA# */

	cfg[HMDEV_MSI + PCI_CAP_LIST_ID] = PCI_CAP_ID_MSI;
	cfg[HMDEV_MSI + PCI_CAP_LIST_NEXT] = 0;
	hmdev_cfg_put16(cfg, HMDEV_MSI + PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT);	/* 1 vector */

	/* Address bits: the BAR's size is a power of two, its low bits are flags or zero. */
	s->bar0_addr_mask = ~(u32)(HMDEV_BAR0_SIZE - 1);
	s->bar2_addr_mask = ~(u64)(s->mem_size - 1);
}

/*
 * Every bit that user space cannot write is as this device has it (read-only bits never
 * change after init): IDs, header type, status, BAR flag bits, capability list, MSI control
 * but its enable bit, and every byte the device does not implement.
 */
bool hmdev_config_possible(const struct hmdev_state *s, const u8 *cfg)
{
	unsigned int off;

	for (off = 0; off < HMDEV_CONFIG_SIZE; off++) {
		u8 ro = ~hmdev_config_wmask(s, off);

		if ((cfg[off] & ro) != (s->config[off] & ro))
			return false;
	}
	return true;
}

bool hmdev_config_msi_enabled(const struct hmdev_state *s)
{
	return s->config[HMDEV_MSI + PCI_MSI_FLAGS] & PCI_MSI_FLAGS_ENABLE;
}

void hmdev_config_set_msi_enable(struct hmdev_state *s, bool enable)
{
	if (enable)
		s->config[HMDEV_MSI + PCI_MSI_FLAGS] |= PCI_MSI_FLAGS_ENABLE;
	else
		s->config[HMDEV_MSI + PCI_MSI_FLAGS] &= ~PCI_MSI_FLAGS_ENABLE;
}

bool hmdev_config_intx_disabled(const struct hmdev_state *s)
{
	return s->config[PCI_COMMAND + 1] & (PCI_COMMAND_INTX_DISABLE >> 8);
}

ssize_t hmdev_config_rw(struct hmdev_state *s, char *buf, size_t count, loff_t pos,
			bool write)
{
	bool irq_routing = false;
	size_t i;

	lockdep_assert_held(&s->lock);
	if (pos < 0 || pos >= HMDEV_CONFIG_SIZE || count > HMDEV_CONFIG_SIZE - pos)
		return -EINVAL;
	if (!write) {
		memcpy(buf, &s->config[pos], count);
		if (pos <= PCI_STATUS && PCI_STATUS < pos + count && hmdev_irq_intx_pending(s))
			buf[PCI_STATUS - pos] |= PCI_STATUS_INTERRUPT;
		return count;
	}
	for (i = 0; i < count; i++) {
		unsigned int off = pos + i;
		u8 wmask = hmdev_config_wmask(s, off);
		u8 old = s->config[off];

		s->config[off] = (old & ~wmask) | ((u8)buf[i] & wmask);
		if (s->config[off] != old &&
		    (off == PCI_COMMAND + 1 || off == HMDEV_MSI + PCI_MSI_FLAGS))
			irq_routing = true;
	}
	/* INTx disable or MSI enable changed: the INTx line may need to fire now. */
	if (irq_routing)
		hmdev_irq_update(s);
	return count;
}
