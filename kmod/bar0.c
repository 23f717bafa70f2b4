// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio_harness_mdev: BAR0, the trapped register block (region 0, 4 KiB).
 *
 * s->regs holds the register bytes. An access of any size inside the BAR works byte by byte:
 * a read returns the bytes (write-only registers read as zero), a write applies each byte's
 * rule (read-only: ignored, RW: stored, RW1C: clears, IRQ_RAISE: raises) and then the side
 * effects of the whole write: at most one interrupt update and one DMA_CMD doorbell.
 */
#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/string.h>

#include "hmdev.h"

/* Which register a byte offset belongs to, for the ones whose bytes behave alike. */
static bool hmdev_in(unsigned int off, unsigned int reg, unsigned int size)
{
	return off >= reg && off < reg + size;
}

void hmdev_regs_init(struct hmdev_state *s)
{
	memset(s->regs, 0, sizeof(s->regs));
	hmdev_reg_write32(s, HMDEV_REG_ID, HMDEV_ID_VALUE);
	hmdev_reg_write32(s, HMDEV_REG_VERSION, HMDEV_VERSION_VALUE);
	hmdev_reg_write32(s, HMDEV_REG_TYPE, s->type->index);
	hmdev_reg_write32(s, HMDEV_REG_MEM_SIZE, s->mem_size);
}

/*
 * A register block the device could be in: its identity (ID, VERSION, TYPE, MEM_SIZE), only
 * interrupt sources it has in IRQ_STATUS and IRQ_MASK, a DMA status and error it could
 * report, and zero in the write-only registers and every byte that is no register. Scratch,
 * the DMA programming registers and the counters may hold anything.
 */
bool hmdev_regs_possible(const struct hmdev_state *s, const u8 *regs)
{
	static const struct {
		u16 reg;
		u16 size;
	} free[] = {
		{ HMDEV_REG_SCRATCH0, 4 * HMDEV_NR_SCRATCH },
		{ HMDEV_REG_DMA_SRC, 8 }, { HMDEV_REG_DMA_DST, 8 }, { HMDEV_REG_DMA_LEN, 4 },
		{ HMDEV_REG_DMA_DONE_COUNT, 4 },
		{ HMDEV_REG_PINNED_PAGES, HMDEV_REG_BAR2_TRAPPED + 4 - HMDEV_REG_PINNED_PAGES },
		/* checked below */
		{ HMDEV_REG_ID, HMDEV_REG_MEM_SIZE + 4 - HMDEV_REG_ID },
		{ HMDEV_REG_IRQ_STATUS, 8 },	/* and IRQ_MASK */
		{ HMDEV_REG_DMA_STATUS, 8 },	/* and DMA_ERROR */
	};
	u32 irq_bits = hmdev_le32_at(regs + HMDEV_REG_IRQ_STATUS) |
		       hmdev_le32_at(regs + HMDEV_REG_IRQ_MASK);
	u32 dma_status = hmdev_le32_at(regs + HMDEV_REG_DMA_STATUS);
	u32 dma_error = hmdev_le32_at(regs + HMDEV_REG_DMA_ERROR);
	unsigned int off, i;

	if (memcmp(regs + HMDEV_REG_ID, s->regs + HMDEV_REG_ID,
		   HMDEV_REG_MEM_SIZE + 4 - HMDEV_REG_ID))
		return false;
	if (irq_bits & ~HMDEV_IRQ_ALL)
		return false;
	if (dma_status == HMDEV_DMA_STATUS_ERROR ? !dma_error || dma_error > MAX_ERRNO :
	    dma_error || (dma_status && dma_status != HMDEV_DMA_STATUS_DONE))
		return false;
	for (off = 0; off < HMDEV_BAR0_SIZE; off++) {
		for (i = 0; i < ARRAY_SIZE(free); i++)
			if (hmdev_in(off, free[i].reg, free[i].size))
				break;
		if (i == ARRAY_SIZE(free) && regs[off])
			return false;
	}
	return true;
}

static bool hmdev_write_only(unsigned int off)
{
	return hmdev_in(off, HMDEV_REG_IRQ_RAISE, 4) || hmdev_in(off, HMDEV_REG_DMA_CMD, 4);
}

static void hmdev_bar0_read(struct hmdev_state *s, char *buf, size_t count, unsigned int pos)
{
	size_t i;

	for (i = 0; i < count; i++)
		buf[i] = hmdev_write_only(pos + i) ? 0 : s->regs[pos + i];
}

static void hmdev_bar0_write(struct hmdev_state *s, const char *buf, size_t count,
			     unsigned int pos)
{
	bool irq_changed = false, doorbell = false;
	u32 raise = 0, cmd = 0;
	size_t i;

	for (i = 0; i < count; i++) {
		unsigned int off = pos + i;
		unsigned int shift = 8 * (off & 3);
		u8 val = buf[i];

		if (hmdev_in(off, HMDEV_REG_SCRATCH0, 4 * HMDEV_NR_SCRATCH) ||
		    hmdev_in(off, HMDEV_REG_DMA_SRC, 8) || hmdev_in(off, HMDEV_REG_DMA_DST, 8) ||
		    hmdev_in(off, HMDEV_REG_DMA_LEN, 4)) {
			s->regs[off] = val;
		} else if (hmdev_in(off, HMDEV_REG_IRQ_STATUS, 4)) {
			s->regs[off] &= ~val;
			irq_changed = true;
		} else if (hmdev_in(off, HMDEV_REG_IRQ_MASK, 4)) {
			s->regs[off] = val & (u8)(HMDEV_IRQ_ALL >> shift);
			irq_changed = true;
		} else if (hmdev_in(off, HMDEV_REG_IRQ_RAISE, 4)) {
			raise |= (u32)val << shift;
		} else if (hmdev_in(off, HMDEV_REG_DMA_CMD, 4)) {
			cmd |= (u32)val << shift;
			doorbell = true;
		}
		/* everything else is read-only or unimplemented: the byte is ignored */
	}

	/*
	 * Doorbells do nothing while migration has the device stopped, and a stopped device
	 * signals no interrupt: a line changed by IRQ_STATUS/IRQ_MASK writes is delivered when
	 * the device runs again (hmdev_mig_set_state()).
	 */
	if (!hmdev_mig_running(s)) {
		raise = 0;
		doorbell = false;
		irq_changed = false;
	}
	raise &= HMDEV_IRQ_ALL;
	if (raise) {
		hmdev_reg_write32(s, HMDEV_REG_IRQ_STATUS,
				  hmdev_reg_read32(s, HMDEV_REG_IRQ_STATUS) | raise);
		hmdev_irq_raise(s, raise);
	} else if (irq_changed) {
		hmdev_irq_update(s);
	}
	if (doorbell) {
		hmdev_reg_write32(s, HMDEV_REG_DMA_CMD, cmd);
		hmdev_dma_run(s);
		hmdev_reg_write32(s, HMDEV_REG_DMA_CMD, 0);
	}
}

ssize_t hmdev_bar0_rw(struct hmdev_state *s, char *buf, size_t count, loff_t pos,
		      bool write)
{
	lockdep_assert_held(&s->lock);
	if (pos < 0 || pos >= HMDEV_BAR0_SIZE || count > HMDEV_BAR0_SIZE - pos)
		return -EINVAL;
	if (write) {
		hmdev_bar0_write(s, buf, count, pos);
	} else {
		hmdev_dma_sync_regs(s);
		hmdev_bar0_read(s, buf, count, pos);
	}
	return count;
}
