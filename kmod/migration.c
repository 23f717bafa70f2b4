// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio_harness_mdev: VFIO migration v2.
 *
 * States: RUNNING, STOP, STOP_COPY, RESUMING and RUNNING_P2P on every kernel, and PRE_COPY and
 * PRE_COPY_P2P where the kernel has them (VFIO_MIGRATION_PRE_COPY, 6.2 on). The DMA engine and
 * the doorbells run only in RUNNING and PRE_COPY (hmdev_mig_running()); the P2P states stop all
 * DMA, as the device cannot tell peer-to-peer targets from others.
 *
 * The data stream is a sequence of records, little endian:
 *
 *   struct hmdev_mig_rec  { u16 tag; u16 flags (0); u32 length; u64 offset; u32 seq; u32 crc; }
 *   followed by `length` payload bytes. seq counts the records from 0; crc is the CRC-32
 *   (crc32_le, inverted) of the record header up to crc followed by the payload.
 *
 *   HEADER  first record: magic "HMIG", version, type index, BAR2 size, chunk size, config
 *           space, BAR0 and IRQ index counts
 *   MEM     one chunk of BAR2 (64 KiB, the last one shorter) at `offset`; a chunk may be sent
 *           more than once (pre-copy resends what changed), the last copy wins
 *   CONFIG  PCI config space (its read-only bits must be the target's: config.c), and the
 *           BARs' address masks (checked, not restored)
 *   REGS    the BAR0 register bytes (registers the target could hold: bar0.c)
 *   IRQS    per IRQ index: INTx masked, MSI enabled
 *   END     last record: the number of records and of stream bytes before it
 *
 * STOP_COPY streams HEADER, every MEM chunk, CONFIG, REGS, IRQS, END, all as they were when
 * the device stopped. PRE_COPY streams HEADER and every chunk (the initial data) while the
 * device runs, then whatever chunks changed since they were read (dirty data: a chunk is dirty
 * when it differs from the copy that was read out); at the temporary end of the stream read()
 * fails with ENOMSG. Entering STOP_COPY from PRE_COPY queues the chunks still dirty and the
 * device state records, then END.
 *
 * Resuming parses the records as they are written into a staging copy, validating each record
 * (tag, seq, length, offset, CRC, header fields against this device, read-only config and BAR0
 * registers) and fails the write with EINVAL at the first bad byte; the error sticks. Leaving
 * RESUMING applies the staged state only after an END that saw every chunk and every state
 * record; otherwise the transition fails with EINVAL and the device is unchanged (it stays in
 * RESUMING: more data may follow; closing the device ends the session). The pin bookkeeping
 * registers (PINNED_PAGES, TOTAL_PINS, TOTAL_UNPINS, DMA_UNMAP_CALLS), RESET_COUNT and the
 * access counters (BAR0_ACCESSES, BAR2_TRAPPED) describe this device's open session and keep
 * their values; IRQ eventfds stay as they were.
 *
 * Locking: s->lock covers the device, the migration state and the shared part of each
 * migration file; a migration file's own mutex serializes its read()/write()/ioctl() and is
 * always taken outside s->lock. User memory is only touched with the file mutex alone held,
 * so set_state and close never wait on a user page fault. A migration file holds a reference
 * on the vfio_device, so it may outlive close_device (it is disabled there: ENODEV).
 */

#include <linux/anon_inodes.h>
#include <linux/bitmap.h>
#include <linux/crc32.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/pci_regs.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "compat.h"
#include "faults.h"
#include "hmdev.h"

/*
 * The PRE_COPY names, from compat.h's HMDEV_HAVE_PRE_COPY. Without PRE_COPY (6.1) the states
 * keep their UAPI values here, so that the code needs no #if: the core never enters them.
 */
#if HMDEV_HAVE_PRE_COPY
#define HMDEV_MIGRATION_PRE_COPY	VFIO_MIGRATION_PRE_COPY
#define HMDEV_STATE_PRE_COPY		VFIO_DEVICE_STATE_PRE_COPY
#define HMDEV_STATE_PRE_COPY_P2P	VFIO_DEVICE_STATE_PRE_COPY_P2P
#else
#define HMDEV_MIGRATION_PRE_COPY	0
#define HMDEV_STATE_PRE_COPY		6
#define HMDEV_STATE_PRE_COPY_P2P	7
#endif

#define HMDEV_MIG_MAGIC		0x47494d48	/* "HMIG" */
#define HMDEV_MIG_VERSION	1
#define HMDEV_MIG_CHUNK		SZ_64K
#define HMDEV_MIG_BOUNCE	SZ_64K		/* write() copies user data in pieces of this */

enum hmdev_mig_tag {
	HMDEV_MIG_TAG_HEADER = 1,
	HMDEV_MIG_TAG_MEM = 2,
	HMDEV_MIG_TAG_CONFIG = 3,
	HMDEV_MIG_TAG_REGS = 4,
	HMDEV_MIG_TAG_IRQS = 5,
	HMDEV_MIG_TAG_END = 6,
};

struct hmdev_mig_rec {
	__le16 tag;
	__le16 flags;
	__le32 length;
	__le64 offset;
	__le32 seq;
	__le32 crc;
};

#define HMDEV_MIG_REC_CRC_SPAN	offsetof(struct hmdev_mig_rec, crc)

struct hmdev_mig_header {
	__le32 magic;
	__le32 version;
	__le32 type_index;
	__le32 chunk_size;
	__le64 mem_size;
	__le16 config_size;
	__le16 bar0_size;
	__le16 nr_irqs;
	__le16 reserved;
};

struct hmdev_mig_config {
	u8 bytes[HMDEV_CONFIG_SIZE];
	__le32 bar0_addr_mask;
	__le32 reserved;
	__le64 bar2_addr_mask;
};

#define HMDEV_MIG_IRQ_MASKED	BIT(0)
#define HMDEV_MIG_IRQ_ENABLED	BIT(1)

struct hmdev_mig_irqs {
	__le32 state[VFIO_PCI_NUM_IRQS];
};

struct hmdev_mig_end {
	__le64 bytes;		/* stream bytes before this record */
	__le32 records;		/* records before this one */
	__le32 reserved;
};

/* The largest record payload: a chunk of BAR2, or the register block. */
#define HMDEV_MIG_MAX_PAYLOAD	max_t(size_t, HMDEV_MIG_CHUNK, HMDEV_BAR0_SIZE)

/* Tail records of a STOP_COPY stream, in stream order. */
enum hmdev_mig_tail {
	HMDEV_MIG_TAIL_CONFIG,
	HMDEV_MIG_TAIL_REGS,
	HMDEV_MIG_TAIL_IRQS,
	HMDEV_MIG_TAIL_END,
	HMDEV_MIG_TAIL_DONE,
};

struct hmdev_mig_file {
	struct file *filp;
	struct hmdev_state *s;		/* referenced: see hmdev_mig_file_new() */
	struct mutex lock;		/* read/write/ioctl of this file; taken outside s->lock */

	/* Under lock: saving, the record being read out; resuming, the write bounce buffer. */
	u8 *buf;
	size_t buf_len;
	size_t buf_pos;
	bool buf_initial;		/* the record in buf is initial pre-copy data */

	/* Everything below is under s->lock. */
	bool disabled;			/* the session ended: read/write fail with ENODEV */
	u8 *image;			/* saving: BAR2 as last read out; resuming: staged BAR2 */
	unsigned long *chunks;		/* saving: chunks to send; resuming: chunks received */
	unsigned long *initial;		/* saving in pre-copy: first-pass chunks not yet sent */
	unsigned int nr_chunks;
	u32 seq;			/* records produced or accepted so far */
	u64 bytes;			/* stream bytes produced or accepted so far */

	/* saving */
	bool final;			/* in STOP_COPY: the state below is the snapshot to send */
	bool header_done;
	enum hmdev_mig_tail tail;

	/* resuming: the record being parsed */
	union {
		struct hmdev_mig_rec hdr;
		u8 raw[sizeof(struct hmdev_mig_rec)];
	} rec;
	size_t rec_fill;
	void *pay;
	size_t pay_len;
	size_t pay_fill;
	int error;			/* sticky: the stream was rejected */
	bool have_header;
	bool have_config;
	bool have_regs;
	bool have_irqs;
	bool ended;

	/* saving: snapshot of the device state; resuming: staged device state */
	struct hmdev_mig_header header;
	struct hmdev_mig_config config;
	u8 regs[HMDEV_BAR0_SIZE];
	struct hmdev_mig_irqs irqs;
	struct hmdev_mig_end end;
};

static bool hmdev_mig_saving_state(enum vfio_device_mig_state state)
{
	return state == VFIO_DEVICE_STATE_STOP_COPY || state == HMDEV_STATE_PRE_COPY ||
	       state == HMDEV_STATE_PRE_COPY_P2P;
}

bool hmdev_mig_running(const struct hmdev_state *s)
{
	enum vfio_device_mig_state state = READ_ONCE(s->mig_state);

	return state == VFIO_DEVICE_STATE_RUNNING || state == HMDEV_STATE_PRE_COPY;
}

static unsigned int hmdev_mig_nr_chunks(const struct hmdev_state *s)
{
	return DIV_ROUND_UP(s->mem_size, HMDEV_MIG_CHUNK);
}

static size_t hmdev_mig_chunk_len(const struct hmdev_state *s, unsigned int chunk)
{
	size_t off = (size_t)chunk * HMDEV_MIG_CHUNK;

	return min_t(size_t, HMDEV_MIG_CHUNK, s->mem_size - off);
}

static u64 hmdev_mig_rec_size(size_t payload)
{
	return sizeof(struct hmdev_mig_rec) + payload;
}

static u32 hmdev_mig_crc(const struct hmdev_mig_rec *rec, const void *payload, size_t len)
{
	u32 crc = crc32_le(~0U, (const u8 *)rec, HMDEV_MIG_REC_CRC_SPAN);

	return ~crc32_le(crc, payload, len);
}

/* ---- Migration files ---------------------------------------------------------------------- */

static int hmdev_mig_release(struct inode *inode, struct file *filp)
{
	struct hmdev_mig_file *migf = filp->private_data;
	struct hmdev_state *s = migf->s;

	/* s->saving/resuming no longer points here: disabled, or never published. */
	vfree(migf->image);
	bitmap_free(migf->chunks);
	bitmap_free(migf->initial);
	kvfree(migf->buf);
	mutex_destroy(&migf->lock);
	kfree(migf);
	vfio_put_device(&s->vdev);
	return 0;
}

/*
 * A new migration file with its buffer, holding a reference on the vfio_device so that s stays
 * valid for read/write/ioctl even after close_device and removal (they then fail with ENODEV).
 */
static struct hmdev_mig_file *hmdev_mig_file_new(struct hmdev_state *s,
						 const struct file_operations *fops, int flags,
						 size_t buf_size)
{
	struct hmdev_mig_file *migf;
	int ret;

	migf = kzalloc(sizeof(*migf), GFP_KERNEL_ACCOUNT);
	if (!migf)
		return ERR_PTR(-ENOMEM);
	migf->buf = kvzalloc(buf_size, GFP_KERNEL_ACCOUNT);
	if (!migf->buf) {
		ret = -ENOMEM;
		goto err_free;
	}
	migf->s = s;
	migf->nr_chunks = hmdev_mig_nr_chunks(s);
	mutex_init(&migf->lock);

	migf->filp = anon_inode_getfile("hmdev_mig", fops, migf, flags);
	if (IS_ERR(migf->filp)) {
		ret = PTR_ERR(migf->filp);
		mutex_destroy(&migf->lock);
		goto err_free;
	}
	/* No seeking, no pread/pwrite: read() and write() get a NULL position. */
	stream_open(migf->filp->f_inode, migf->filp);
	get_device(&s->vdev.device);
	return migf;

err_free:
	kvfree(migf->buf);
	kfree(migf);
	return ERR_PTR(ret);
}

/* Ends a session: read/write fail from now on, and s drops its reference. */
static void hmdev_mig_file_disable(struct hmdev_state *s, struct hmdev_mig_file **slot)
{
	struct hmdev_mig_file *migf = *slot;

	lockdep_assert_held(&s->lock);
	if (!migf)
		return;
	migf->disabled = true;
	vfree(migf->image);
	migf->image = NULL;
	bitmap_free(migf->chunks);
	migf->chunks = NULL;
	bitmap_free(migf->initial);
	migf->initial = NULL;
	*slot = NULL;
	fput(migf->filp);
}

static void hmdev_mig_disable_all(struct hmdev_state *s)
{
	hmdev_mig_file_disable(s, &s->saving);
	hmdev_mig_file_disable(s, &s->resuming);
}

/* ---- Saving ------------------------------------------------------------------------------- */

static void hmdev_mig_fill_header(const struct hmdev_state *s, struct hmdev_mig_header *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = cpu_to_le32(HMDEV_MIG_MAGIC);
	h->version = cpu_to_le32(HMDEV_MIG_VERSION);
	h->type_index = cpu_to_le32(s->type->index);
	h->chunk_size = cpu_to_le32(HMDEV_MIG_CHUNK);
	h->mem_size = cpu_to_le64(s->mem_size);
	h->config_size = cpu_to_le16(HMDEV_CONFIG_SIZE);
	h->bar0_size = cpu_to_le16(HMDEV_BAR0_SIZE);
	h->nr_irqs = cpu_to_le16(VFIO_PCI_NUM_IRQS);
}

/* The device state sent after the memory; taken when the device stops. */
static void hmdev_mig_snapshot(struct hmdev_mig_file *migf)
{
	const struct hmdev_state *s = migf->s;
	unsigned int i;

	memset(&migf->config, 0, sizeof(migf->config));
	memcpy(migf->config.bytes, s->config, HMDEV_CONFIG_SIZE);
	migf->config.bar0_addr_mask = cpu_to_le32(s->bar0_addr_mask);
	migf->config.bar2_addr_mask = cpu_to_le64(s->bar2_addr_mask);
	memcpy(migf->regs, s->regs, HMDEV_BAR0_SIZE);
	for (i = 0; i < VFIO_PCI_NUM_IRQS; i++) {
		u32 state = (s->irqs[i].masked ? HMDEV_MIG_IRQ_MASKED : 0) |
			    (s->irqs[i].enabled ? HMDEV_MIG_IRQ_ENABLED : 0);

		migf->irqs.state[i] = cpu_to_le32(state);
	}
}

/* Puts one record into the read-out buffer (s->lock and migf->lock held). */
static void hmdev_mig_put_record(struct hmdev_mig_file *migf, enum hmdev_mig_tag tag, u64 offset,
				 const void *payload, size_t len, bool initial)
{
	struct hmdev_mig_rec *rec = (struct hmdev_mig_rec *)migf->buf;
	u8 *data = migf->buf + sizeof(*rec);

	rec->tag = cpu_to_le16(tag);
	rec->flags = 0;
	rec->length = cpu_to_le32(len);
	rec->offset = cpu_to_le64(offset);
	rec->seq = cpu_to_le32(migf->seq);
	memcpy(data, payload, len);
	rec->crc = cpu_to_le32(hmdev_mig_crc(rec, data, len));

	migf->buf_len = sizeof(*rec) + len;
	migf->buf_pos = 0;
	migf->buf_initial = initial;
	migf->seq++;
	migf->bytes += migf->buf_len;
}

/*
 * Stream bytes of the chunks not queued whose memory differs from what was read out; queues
 * them too when `queue` is set.
 */
static u64 hmdev_mig_scan_dirty(struct hmdev_mig_file *migf, bool queue)
{
	const struct hmdev_state *s = migf->s;
	unsigned int i;
	u64 bytes = 0;

	if (hmdev_faulty(HMDEV_FAULT_MIG_LOSE_DIRTY))
		return 0;
	for (i = 0; i < migf->nr_chunks; i++) {
		size_t off = (size_t)i * HMDEV_MIG_CHUNK;
		size_t len = hmdev_mig_chunk_len(s, i);

		if (test_bit(i, migf->chunks))
			continue;
		if (!memcmp(migf->image + off, (u8 *)s->mem + off, len))
			continue;
		bytes += hmdev_mig_rec_size(len);
		if (queue)
			__set_bit(i, migf->chunks);
		cond_resched();
	}
	return bytes;
}

/*
 * Produces the next record into migf->buf: 1 when there is one, 0 at the end of the stream,
 * -ENOMSG at the temporary end of a pre-copy stream, -ENODEV once the session ended.
 */
static int hmdev_mig_next_record(struct hmdev_mig_file *migf)
{
	struct hmdev_state *s = migf->s;
	unsigned int i;

	lockdep_assert_held(&s->lock);
	if (migf->disabled)
		return -ENODEV;

	if (!migf->header_done) {
		hmdev_mig_fill_header(s, &migf->header);
		hmdev_mig_put_record(migf, HMDEV_MIG_TAG_HEADER, 0, &migf->header,
				     sizeof(migf->header), !migf->final);
		migf->header_done = true;
		return 1;
	}

	i = find_first_bit(migf->chunks, migf->nr_chunks);
	if (i >= migf->nr_chunks && !migf->final) {
		if (!hmdev_mig_scan_dirty(migf, true))
			return -ENOMSG;
		i = find_first_bit(migf->chunks, migf->nr_chunks);
	}
	if (i < migf->nr_chunks) {
		size_t off = (size_t)i * HMDEV_MIG_CHUNK;
		size_t len = hmdev_mig_chunk_len(s, i);
		bool initial = migf->initial && __test_and_clear_bit(i, migf->initial);

		/* Running: send the memory as it is now, and remember what was sent. */
		if (!migf->final)
			memcpy(migf->image + off, (u8 *)s->mem + off, len);
		__clear_bit(i, migf->chunks);
		hmdev_mig_put_record(migf, HMDEV_MIG_TAG_MEM, off, migf->image + off, len, initial);
		return 1;
	}

	switch (migf->tail) {
	case HMDEV_MIG_TAIL_CONFIG:
		hmdev_mig_put_record(migf, HMDEV_MIG_TAG_CONFIG, 0, &migf->config,
				     sizeof(migf->config), false);
		break;
	case HMDEV_MIG_TAIL_REGS:
		hmdev_mig_put_record(migf, HMDEV_MIG_TAG_REGS, 0, migf->regs, HMDEV_BAR0_SIZE,
				     false);
		break;
	case HMDEV_MIG_TAIL_IRQS:
		hmdev_mig_put_record(migf, HMDEV_MIG_TAG_IRQS, 0, &migf->irqs,
				     sizeof(migf->irqs), false);
		break;
	case HMDEV_MIG_TAIL_END:
		migf->end.bytes = cpu_to_le64(migf->bytes);
		migf->end.records = cpu_to_le32(migf->seq);
		migf->end.reserved = 0;
		hmdev_mig_put_record(migf, HMDEV_MIG_TAG_END, 0, &migf->end, sizeof(migf->end),
				     false);
		break;
	default:
		return 0;
	}
	migf->tail++;
	return 1;
}

static ssize_t hmdev_mig_read(struct file *filp, char __user *buf, size_t len, loff_t *pos)
{
	struct hmdev_mig_file *migf = filp->private_data;
	struct hmdev_state *s = migf->s;
	size_t done = 0;
	int ret = 0;

	if (pos)
		return -ESPIPE;

	mutex_lock(&migf->lock);
	mutex_lock(&s->lock);
	if (migf->disabled)
		ret = -ENODEV;
	mutex_unlock(&s->lock);

	while (!ret && done < len) {
		size_t n;

		if (migf->buf_pos == migf->buf_len) {
			mutex_lock(&s->lock);
			ret = hmdev_mig_next_record(migf);
			mutex_unlock(&s->lock);
			if (ret <= 0)
				break;
			ret = 0;
		}
		n = min_t(size_t, len - done, migf->buf_len - migf->buf_pos);
		if (copy_to_user(buf + done, migf->buf + migf->buf_pos, n)) {
			ret = -EFAULT;
			break;
		}
		migf->buf_pos += n;
		done += n;
		filp->f_pos += n;
	}
	mutex_unlock(&migf->lock);

	return done ? done : ret;
}

#if HMDEV_HAVE_PRE_COPY
static long hmdev_mig_precopy_info(struct file *filp, unsigned long arg)
{
	struct hmdev_mig_file *migf = filp->private_data;
	struct hmdev_state *s = migf->s;
	size_t minsz = offsetofend(struct vfio_precopy_info, dirty_bytes);
	struct vfio_precopy_info info;
	u64 initial = 0, dirty = 0;
	unsigned int i;
	int ret = 0;

	if (copy_from_user(&info, (void __user *)arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz)
		return -EINVAL;

	mutex_lock(&migf->lock);
	mutex_lock(&s->lock);
	if (migf->disabled || (s->mig_state != HMDEV_STATE_PRE_COPY &&
			       s->mig_state != HMDEV_STATE_PRE_COPY_P2P)) {
		ret = -EINVAL;
		goto out_unlock;
	}

	if (!migf->header_done)
		initial += hmdev_mig_rec_size(sizeof(struct hmdev_mig_header));
	for_each_set_bit(i, migf->chunks, migf->nr_chunks) {
		u64 bytes = hmdev_mig_rec_size(hmdev_mig_chunk_len(s, i));

		if (migf->initial && test_bit(i, migf->initial))
			initial += bytes;
		else
			dirty += bytes;
	}
	if (migf->buf_initial)
		initial += migf->buf_len - migf->buf_pos;
	else
		dirty += migf->buf_len - migf->buf_pos;
	dirty += hmdev_mig_scan_dirty(migf, false);

out_unlock:
	mutex_unlock(&s->lock);
	mutex_unlock(&migf->lock);
	if (ret)
		return ret;

	info.initial_bytes = initial;
	info.dirty_bytes = dirty;
	/*
	 * flags is an output for users that opted in to precopy info v2 (7.x), reserved before;
	 * no flag (REINIT) ever applies here, so it reads 0 either way.
	 */
	info.flags = 0;
	return copy_to_user((void __user *)arg, &info, minsz) ? -EFAULT : 0;
}

static long hmdev_mig_save_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	if (cmd != VFIO_MIG_GET_PRECOPY_INFO)
		return -ENOTTY;
	return hmdev_mig_precopy_info(filp, arg);
}
#endif

static const struct file_operations hmdev_mig_save_fops = {
	.owner = THIS_MODULE,
	.read = hmdev_mig_read,
#if HMDEV_HAVE_PRE_COPY
	.unlocked_ioctl = hmdev_mig_save_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
#endif
	.release = hmdev_mig_release,
};

/* STOP -> STOP_COPY (precopy false), RUNNING(_P2P) -> PRE_COPY(_P2P) (precopy true). */
static struct file *hmdev_mig_save_start(struct hmdev_state *s, bool precopy)
{
	struct hmdev_mig_file *migf;

	migf = hmdev_mig_file_new(s, &hmdev_mig_save_fops, O_RDONLY,
				  hmdev_mig_rec_size(HMDEV_MIG_MAX_PAYLOAD));
	if (IS_ERR(migf))
		return ERR_CAST(migf);

	migf->chunks = bitmap_zalloc(migf->nr_chunks, GFP_KERNEL_ACCOUNT);
	if (precopy)
		migf->initial = bitmap_zalloc(migf->nr_chunks, GFP_KERNEL_ACCOUNT);
	if (s->mem_size)
		migf->image = vzalloc(s->mem_size);
	if (!migf->chunks || (precopy && !migf->initial) || (s->mem_size && !migf->image)) {
		fput(migf->filp);	/* hmdev_mig_release() frees what was allocated */
		return ERR_PTR(-ENOMEM);
	}

	bitmap_fill(migf->chunks, migf->nr_chunks);
	if (precopy) {
		bitmap_fill(migf->initial, migf->nr_chunks);
	} else {
		if (s->mem_size)
			memcpy(migf->image, s->mem, s->mem_size);
		hmdev_dma_sync_regs(s);
		hmdev_mig_snapshot(migf);
		migf->final = true;
	}

	s->saving = migf;
	return get_file(migf->filp);
}

/* PRE_COPY(_P2P) -> STOP_COPY: the device is stopped, queue what changed and the state. */
static void hmdev_mig_save_stop(struct hmdev_state *s)
{
	struct hmdev_mig_file *migf = s->saving;

	hmdev_mig_scan_dirty(migf, true);
	if (s->mem_size)
		memcpy(migf->image, s->mem, s->mem_size);
	hmdev_dma_sync_regs(s);
	hmdev_mig_snapshot(migf);
	migf->final = true;
}

/* ---- Resuming ----------------------------------------------------------------------------- */

static int hmdev_mig_check_header(const struct hmdev_state *s, const struct hmdev_mig_header *h)
{
	if (le32_to_cpu(h->magic) != HMDEV_MIG_MAGIC ||
	    le32_to_cpu(h->version) != HMDEV_MIG_VERSION ||
	    le32_to_cpu(h->type_index) != (u32)s->type->index ||
	    le32_to_cpu(h->chunk_size) != HMDEV_MIG_CHUNK ||
	    le64_to_cpu(h->mem_size) != s->mem_size ||
	    le16_to_cpu(h->config_size) != HMDEV_CONFIG_SIZE ||
	    le16_to_cpu(h->bar0_size) != HMDEV_BAR0_SIZE ||
	    le16_to_cpu(h->nr_irqs) != VFIO_PCI_NUM_IRQS || h->reserved)
		return -EINVAL;
	return 0;
}

/* Config space this device could have, with this device's BAR address masks. */
static int hmdev_mig_check_config(const struct hmdev_state *s, const struct hmdev_mig_config *c)
{
	if (c->reserved || le32_to_cpu(c->bar0_addr_mask) != s->bar0_addr_mask ||
	    le64_to_cpu(c->bar2_addr_mask) != s->bar2_addr_mask ||
	    !hmdev_config_possible(s, c->bytes))
		return -EINVAL;
	return 0;
}

/* Registers this device could hold (bar0.c): its identity, no undefined bits set. */
static int hmdev_mig_check_regs(const struct hmdev_state *s, const u8 *regs)
{
	return hmdev_regs_possible(s, regs) ? 0 : -EINVAL;
}

static int hmdev_mig_check_irqs(const struct hmdev_mig_irqs *irqs)
{
	unsigned int i;

	for (i = 0; i < VFIO_PCI_NUM_IRQS; i++)
		if (le32_to_cpu(irqs->state[i]) & ~(HMDEV_MIG_IRQ_MASKED | HMDEV_MIG_IRQ_ENABLED))
			return -EINVAL;
	return 0;
}

static int hmdev_mig_check_end(const struct hmdev_mig_file *migf)
{
	const struct hmdev_mig_end *end = &migf->end;

	if (le64_to_cpu(end->bytes) != migf->bytes || le32_to_cpu(end->records) != migf->seq ||
	    end->reserved)
		return -EINVAL;
	if (!migf->have_config || !migf->have_regs || !migf->have_irqs ||
	    !bitmap_full(migf->chunks, migf->nr_chunks))
		return -EINVAL;
	return 0;
}

/* A record header is complete: check it and point the payload at its staging place. */
static int hmdev_mig_rec_begin(struct hmdev_mig_file *migf)
{
	const struct hmdev_mig_rec *rec = &migf->rec.hdr;
	const struct hmdev_state *s = migf->s;
	u16 tag = le16_to_cpu(rec->tag);
	u64 offset = le64_to_cpu(rec->offset);
	size_t want;
	void *dst;

	if (rec->flags || le32_to_cpu(rec->seq) != migf->seq || migf->seq == U32_MAX)
		return -EINVAL;
	if (tag != HMDEV_MIG_TAG_HEADER && !migf->have_header)
		return -EINVAL;		/* HEADER comes first, and once */
	if (tag != HMDEV_MIG_TAG_MEM && offset)
		return -EINVAL;

	switch (tag) {
	case HMDEV_MIG_TAG_HEADER:
		if (migf->have_header)
			return -EINVAL;
		dst = &migf->header;
		want = sizeof(migf->header);
		break;
	case HMDEV_MIG_TAG_MEM:
		if (offset >= s->mem_size || offset % HMDEV_MIG_CHUNK)
			return -EINVAL;
		dst = migf->image + offset;
		want = hmdev_mig_chunk_len(s, offset / HMDEV_MIG_CHUNK);
		break;
	case HMDEV_MIG_TAG_CONFIG:
		if (migf->have_config)
			return -EINVAL;
		dst = &migf->config;
		want = sizeof(migf->config);
		break;
	case HMDEV_MIG_TAG_REGS:
		if (migf->have_regs)
			return -EINVAL;
		dst = migf->regs;
		want = HMDEV_BAR0_SIZE;
		break;
	case HMDEV_MIG_TAG_IRQS:
		if (migf->have_irqs)
			return -EINVAL;
		dst = &migf->irqs;
		want = sizeof(migf->irqs);
		break;
	case HMDEV_MIG_TAG_END:
		dst = &migf->end;
		want = sizeof(migf->end);
		break;
	default:
		return -EINVAL;
	}
	if (le32_to_cpu(rec->length) != want)
		return -EINVAL;

	migf->pay = dst;
	migf->pay_len = want;
	migf->pay_fill = 0;
	return 0;
}

/* A record's payload is complete: check its CRC and contents. */
static int hmdev_mig_rec_end(struct hmdev_mig_file *migf)
{
	const struct hmdev_mig_rec *rec = &migf->rec.hdr;
	const struct hmdev_state *s = migf->s;
	int ret = 0;

	if (hmdev_mig_crc(rec, migf->pay, migf->pay_len) != le32_to_cpu(rec->crc))
		return -EINVAL;

	switch (le16_to_cpu(rec->tag)) {
	case HMDEV_MIG_TAG_HEADER:
		ret = hmdev_mig_check_header(s, &migf->header);
		migf->have_header = !ret;
		break;
	case HMDEV_MIG_TAG_MEM:
		__set_bit(le64_to_cpu(rec->offset) / HMDEV_MIG_CHUNK, migf->chunks);
		break;
	case HMDEV_MIG_TAG_CONFIG:
		ret = hmdev_mig_check_config(s, &migf->config);
		migf->have_config = !ret;
		break;
	case HMDEV_MIG_TAG_REGS:
		ret = hmdev_mig_check_regs(s, migf->regs);
		migf->have_regs = !ret;
		break;
	case HMDEV_MIG_TAG_IRQS:
		ret = hmdev_mig_check_irqs(&migf->irqs);
		migf->have_irqs = !ret;
		break;
	case HMDEV_MIG_TAG_END:
		ret = hmdev_mig_check_end(migf);
		migf->ended = !ret;
		break;
	}
	if (ret)
		return ret;

	migf->seq++;
	migf->bytes += hmdev_mig_rec_size(migf->pay_len);
	migf->rec_fill = 0;
	return 0;
}

/* Feeds stream bytes to the parser (s->lock held). */
static int hmdev_mig_parse(struct hmdev_mig_file *migf, const u8 *data, size_t len)
{
	int ret;

	while (len) {
		size_t take;

		if (migf->ended)
			return -EINVAL;		/* nothing may follow END */

		if (migf->rec_fill < sizeof(migf->rec.raw)) {
			take = min_t(size_t, len, sizeof(migf->rec.raw) - migf->rec_fill);
			memcpy(migf->rec.raw + migf->rec_fill, data, take);
			migf->rec_fill += take;
			if (migf->rec_fill == sizeof(migf->rec.raw)) {
				ret = hmdev_mig_rec_begin(migf);
				if (ret)
					return ret;
			}
		} else {
			take = min_t(size_t, len, migf->pay_len - migf->pay_fill);
			memcpy((u8 *)migf->pay + migf->pay_fill, data, take);
			migf->pay_fill += take;
			if (migf->pay_fill == migf->pay_len) {
				ret = hmdev_mig_rec_end(migf);
				if (ret)
					return ret;
			}
		}
		data += take;
		len -= take;
	}
	return 0;
}

static ssize_t hmdev_mig_write(struct file *filp, const char __user *buf, size_t len,
			       loff_t *pos)
{
	struct hmdev_mig_file *migf = filp->private_data;
	struct hmdev_state *s = migf->s;
	size_t done = 0;
	int ret = 0;

	if (pos)
		return -ESPIPE;

	mutex_lock(&migf->lock);
	while (done < len) {
		size_t n = min_t(size_t, len - done, HMDEV_MIG_BOUNCE);

		/* copy in with only the file's mutex held: a fault may need s->lock */
		if (copy_from_user(migf->buf, buf + done, n)) {
			ret = -EFAULT;
			break;
		}
		mutex_lock(&s->lock);
		if (migf->disabled) {
			ret = -ENODEV;
		} else if (migf->error) {
			ret = migf->error;
		} else {
			ret = hmdev_mig_parse(migf, migf->buf, n);
			if (ret) {
				migf->error = ret;
				dev_dbg(s->vdev.dev,
					"migration stream rejected at byte %llu (record %u)\n",
					migf->bytes + migf->rec_fill + migf->pay_fill, migf->seq);
			}
		}
		mutex_unlock(&s->lock);
		if (ret)
			break;
		done += n;
		filp->f_pos += n;
	}
	mutex_unlock(&migf->lock);

	/* A fault after some bytes went in reports them; a rejected stream fails the write. */
	if (ret && (ret != -EFAULT || !done))
		return ret;
	return done;
}

static const struct file_operations hmdev_mig_resume_fops = {
	.owner = THIS_MODULE,
	.write = hmdev_mig_write,
	.release = hmdev_mig_release,
};

/* STOP -> RESUMING */
static struct file *hmdev_mig_resume_start(struct hmdev_state *s)
{
	struct hmdev_mig_file *migf;

	migf = hmdev_mig_file_new(s, &hmdev_mig_resume_fops, O_WRONLY, HMDEV_MIG_BOUNCE);
	if (IS_ERR(migf))
		return ERR_CAST(migf);

	migf->chunks = bitmap_zalloc(migf->nr_chunks, GFP_KERNEL_ACCOUNT);
	if (s->mem_size)
		migf->image = vzalloc(s->mem_size);
	if (!migf->chunks || (s->mem_size && !migf->image)) {
		fput(migf->filp);
		return ERR_PTR(-ENOMEM);
	}

	s->resuming = migf;
	return get_file(migf->filp);
}

/* RESUMING -> STOP: apply a complete, valid stream, or fail and change nothing. */
static int hmdev_mig_resume_load(struct hmdev_state *s)
{
	/* this device's open session, not the migrated device's state */
	static const unsigned int session_regs[] = {
		HMDEV_REG_PINNED_PAGES, HMDEV_REG_TOTAL_PINS, HMDEV_REG_TOTAL_UNPINS,
		HMDEV_REG_DMA_UNMAP_CALLS, HMDEV_REG_RESET_COUNT, HMDEV_REG_BAR0_ACCESSES,
		HMDEV_REG_BAR2_TRAPPED,
	};
	struct hmdev_mig_file *migf = s->resuming;
	u32 keep[ARRAY_SIZE(session_regs)];
	unsigned int i;

	if (migf->error)
		return migf->error;
	if (!migf->ended)
		return -EINVAL;		/* short stream */

	if (s->mem_size)
		memcpy(s->mem, migf->image, s->mem_size);
	memcpy(s->config, migf->config.bytes, HMDEV_CONFIG_SIZE);

	for (i = 0; i < ARRAY_SIZE(session_regs); i++)
		keep[i] = hmdev_reg_read32(s, session_regs[i]);
	memcpy(s->regs, migf->regs, HMDEV_BAR0_SIZE);
	for (i = 0; i < ARRAY_SIZE(session_regs); i++)
		hmdev_reg_write32(s, session_regs[i], keep[i]);

	for (i = 0; i < VFIO_PCI_NUM_IRQS; i++) {
		u32 state = le32_to_cpu(migf->irqs.state[i]);

		s->irqs[i].masked = state & HMDEV_MIG_IRQ_MASKED;
		s->irqs[i].enabled = state & HMDEV_MIG_IRQ_ENABLED;
	}
	return 0;
}

/* ---- The state machine -------------------------------------------------------------------- */

/*
 * One arc of the FSM, as vfio_mig_get_next_state() hands them out:
 *   STOP -> STOP_COPY, RUNNING(_P2P) -> PRE_COPY(_P2P): a saving file
 *   PRE_COPY(_P2P) -> STOP_COPY: the device stops, the stream gets the final state
 *   STOP_COPY -> STOP, PRE_COPY(_P2P) -> RUNNING(_P2P): the saving session ends
 *   STOP -> RESUMING: a resuming file; RESUMING -> STOP: the stream is applied
 *   RUNNING <-> RUNNING_P2P <-> STOP, RUNNING <-> STOP, PRE_COPY <-> PRE_COPY_P2P: only
 *   whether DMA may run changes (hmdev_mig_running())
 */
static struct file *hmdev_mig_step(struct hmdev_state *s, enum vfio_device_mig_state next)
{
	enum vfio_device_mig_state cur = s->mig_state;
	bool cur_saving = hmdev_mig_saving_state(cur);
	bool next_saving = hmdev_mig_saving_state(next);
	int ret;

	if (cur == VFIO_DEVICE_STATE_RESUMING) {
		if (next != VFIO_DEVICE_STATE_STOP)
			goto bad_arc;
		ret = hmdev_mig_resume_load(s);
		if (ret)
			return ERR_PTR(ret);
		hmdev_mig_file_disable(s, &s->resuming);
		return NULL;
	}
	if (next == VFIO_DEVICE_STATE_RESUMING) {
		if (cur != VFIO_DEVICE_STATE_STOP)
			goto bad_arc;
		return hmdev_mig_resume_start(s);
	}
	if (cur_saving && next_saving) {
		if (cur == VFIO_DEVICE_STATE_STOP_COPY)
			goto bad_arc;	/* STOP_COPY -> PRE_COPY is not defined */
		if (next == VFIO_DEVICE_STATE_STOP_COPY)
			hmdev_mig_save_stop(s);
		return NULL;
	}
	if (cur_saving) {
		hmdev_mig_file_disable(s, &s->saving);
		return NULL;
	}
	if (next_saving) {
		if (next == VFIO_DEVICE_STATE_STOP_COPY && cur != VFIO_DEVICE_STATE_STOP)
			goto bad_arc;
		return hmdev_mig_save_start(s, next != VFIO_DEVICE_STATE_STOP_COPY);
	}
	return NULL;

bad_arc:
	WARN_ON_ONCE(1);	/* vfio_mig_get_next_state() never hands these out */
	return ERR_PTR(-EINVAL);
}

static struct file *hmdev_mig_set_state(struct vfio_device *vdev,
					enum vfio_device_mig_state new_state)
{
	struct hmdev_state *s = to_hmdev(vdev);
	struct file *res = NULL;

	mutex_lock(&s->lock);
	while (s->mig_state != new_state) {
		enum vfio_device_mig_state next;
		int ret;

		ret = vfio_mig_get_next_state(vdev, s->mig_state, new_state, &next);
		if (ret) {
			res = ERR_PTR(ret);
			break;
		}
		res = hmdev_mig_step(s, next);
		if (IS_ERR(res))
			break;
		WRITE_ONCE(s->mig_state, next);
		/* only the last arc of a path may open a data session */
		if (WARN_ON_ONCE(res && next != new_state)) {
			fput(res);
			res = ERR_PTR(-EINVAL);
			break;
		}
	}
	/* Deliver what IRQ_STATUS/IRQ_MASK writes changed while the device was stopped. */
	if (hmdev_mig_running(s))
		hmdev_irq_update(s);
	mutex_unlock(&s->lock);
	return res;
}

static int hmdev_mig_get_state(struct vfio_device *vdev, enum vfio_device_mig_state *state)
{
	struct hmdev_state *s = to_hmdev(vdev);

	mutex_lock(&s->lock);
	*state = s->mig_state;
	mutex_unlock(&s->lock);
	return 0;
}

#if HMDEV_HAVE_MIG_DATA_SIZE
/* The length of a whole STOP_COPY stream. */
static u64 hmdev_mig_stream_size(const struct hmdev_state *s)
{
	return hmdev_mig_rec_size(sizeof(struct hmdev_mig_header)) +
	       hmdev_mig_nr_chunks(s) * hmdev_mig_rec_size(0) + s->mem_size +
	       hmdev_mig_rec_size(sizeof(struct hmdev_mig_config)) +
	       hmdev_mig_rec_size(HMDEV_BAR0_SIZE) +
	       hmdev_mig_rec_size(sizeof(struct hmdev_mig_irqs)) +
	       hmdev_mig_rec_size(sizeof(struct hmdev_mig_end));
}

static int hmdev_mig_get_data_size(struct vfio_device *vdev, unsigned long *stop_copy_length)
{
	*stop_copy_length = hmdev_mig_stream_size(to_hmdev(vdev));
	return 0;
}
#endif

static const struct vfio_migration_ops hmdev_mig_ops = {
	.migration_set_state = hmdev_mig_set_state,
	.migration_get_state = hmdev_mig_get_state,
#if HMDEV_HAVE_MIG_DATA_SIZE
	.migration_get_data_size = hmdev_mig_get_data_size,
#endif
};

void hmdev_mig_setup(struct hmdev_state *s)
{
	BUILD_BUG_ON(sizeof(struct hmdev_mig_rec) != 24);
	BUILD_BUG_ON(sizeof(struct hmdev_mig_header) != 32);
	BUILD_BUG_ON(sizeof(struct hmdev_mig_config) != HMDEV_CONFIG_SIZE + 16);
	BUILD_BUG_ON(sizeof(struct hmdev_mig_irqs) != 4 * VFIO_PCI_NUM_IRQS);
	BUILD_BUG_ON(sizeof(struct hmdev_mig_end) != 16);

	s->vdev.migration_flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
				  HMDEV_MIGRATION_PRE_COPY;
	s->vdev.mig_ops = &hmdev_mig_ops;
	s->mig_state = VFIO_DEVICE_STATE_RUNNING;
	s->saving = NULL;
	s->resuming = NULL;
}

void hmdev_mig_close(struct hmdev_state *s)
{
	lockdep_assert_held(&s->lock);
	hmdev_mig_disable_all(s);
	WRITE_ONCE(s->mig_state, VFIO_DEVICE_STATE_RUNNING);
}
