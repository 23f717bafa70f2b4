// SPDX-License-Identifier: GPL-2.0
/*
 * hello: the smallest module the harness builds for each guest kernel. It checks the build
 * chroot (compiler, headers, vermagic) and, booted, that the guest loads what was built.
 */

#include <linux/init.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/printk.h>

static int answer = 42;
module_param(answer, int, 0444);
MODULE_PARM_DESC(answer, "printed on load and readable in /sys/module/hello/parameters");

static int __init hello_init(void)
{
	pr_info("hello: loaded, answer=%d\n", answer);
	return 0;
}

static void __exit hello_exit(void)
{
	pr_info("hello: unloaded\n");
}

module_init(hello_init);
module_exit(hello_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("vfio-harness");
MODULE_DESCRIPTION("Prints on load; a build and load check for the harness");
