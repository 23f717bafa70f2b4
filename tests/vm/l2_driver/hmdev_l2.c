// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * hmdev_l2 - the nested guest's (L2's) driver for the harness's mdev as vfio-pci presents it.
 *
 * The L2 test drives the device from user space (sysfs config, devmem on the BARs), which
 * can do everything but take an interrupt. This driver is the part that needs the kernel:
 * it binds to 1de5:0001, enables the device and requests its legacy INTx line; its handler
 * reads IRQ_STATUS & IRQ_MASK, and if the device is asserting, clears those bits (write 1
 * to clear), which lowers the line. L2's /proc/interrupts then counts one interrupt per
 * completion under the name "hmdev_l2", which the test reads.
 *
 * It leaves MSI to user space (the test points the MSI capability at a RAM address it
 * watches) and requests no BAR regions, so that /dev/mem may still map them
 * (CONFIG_IO_STRICT_DEVMEM refuses regions a driver has claimed).
 */

#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/module.h>
#include <linux/pci.h>

#define HMDEV_L2_VENDOR		0x1de5
#define HMDEV_L2_DEVICE		0x0001
#define HMDEV_L2_IRQ_STATUS	0x040	/* RW1C */
#define HMDEV_L2_IRQ_MASK	0x044	/* RW */

struct hmdev_l2 {
	void __iomem *bar0;
};

static irqreturn_t hmdev_l2_intx(int irq, void *data)
{
	struct hmdev_l2 *dev = data;
	u32 pending;

	pending = ioread32(dev->bar0 + HMDEV_L2_IRQ_STATUS) &
		  ioread32(dev->bar0 + HMDEV_L2_IRQ_MASK);
	if (!pending)
		return IRQ_NONE;	/* someone else's on a shared line */
	iowrite32(pending, dev->bar0 + HMDEV_L2_IRQ_STATUS);
	return IRQ_HANDLED;
}

static int hmdev_l2_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct hmdev_l2 *dev;
	int ret;

	dev = devm_kzalloc(&pdev->dev, sizeof(*dev), GFP_KERNEL);
	if (!dev)
		return -ENOMEM;
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	dev->bar0 = pcim_iomap(pdev, 0, 0);
	if (!dev->bar0)
		return -ENOMEM;
	pci_set_drvdata(pdev, dev);
	ret = devm_request_irq(&pdev->dev, pdev->irq, hmdev_l2_intx, IRQF_SHARED,
			       "hmdev_l2", dev);
	if (ret)
		return ret;
	dev_info(&pdev->dev, "BAR0 %pR, BAR2 %pR, INTx on IRQ %d\n",
		 &pdev->resource[0], &pdev->resource[2], pdev->irq);
	return 0;
}

static const struct pci_device_id hmdev_l2_ids[] = {
	{ PCI_DEVICE(HMDEV_L2_VENDOR, HMDEV_L2_DEVICE) },
	{ }
};
MODULE_DEVICE_TABLE(pci, hmdev_l2_ids);

static struct pci_driver hmdev_l2_driver = {
	.name = "hmdev_l2",
	.id_table = hmdev_l2_ids,
	.probe = hmdev_l2_probe,
};
module_pci_driver(hmdev_l2_driver);

MODULE_DESCRIPTION("L2 driver for the vfio-harness mdev (INTx) in nested tests");
MODULE_LICENSE("Dual MIT/GPL");
