#!/bin/busybox sh
# SPDX-License-Identifier: MIT
# The initrd's /init: load the disk modules, mount the root disk, hand over to the guest init.
# Kernel command line: harness.root=DEV (default /dev/vda).
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "harness-initrd: FATAL: $*" >/dev/console
    poweroff -f
}

mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r module; do
    insmod "/lib/modules/$module" || echo "harness-initrd: insmod $module failed" >/dev/console
done </etc/modules.load

root=/dev/vda
for arg in $(cat /proc/cmdline); do
    case "$arg" in harness.root=*) root="${arg#harness.root=}" ;; esac
done
tries=0
while [ ! -b "$root" ]; do
    tries=$((tries + 1))
    [ "$tries" -gt 400 ] && fail "$root did not appear within 20 s"
    sleep 0.05
done
mount -t ext4 "$root" /newroot || fail "cannot mount $root"
umount /sys /proc
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/harness-init
