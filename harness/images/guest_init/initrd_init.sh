#!/bin/busybox sh
# SPDX-License-Identifier: MIT
# The initrd's /init: load the disk modules, mount the root disk, hand over to the guest init.
# Kernel command line: harness.root=DEV (default /dev/vda); harness.modules=DEV, a custom
# kernel's read-only modules disk, mounted on the root's lib/modules/<release>.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "harness-initrd: FATAL: $*" >/dev/console
    poweroff -f
}

wait_for_disk() {
    tries=0
    while [ ! -b "$1" ]; do
        tries=$((tries + 1))
        [ "$tries" -gt 400 ] && fail "$1 did not appear within 20 s"
        sleep 0.05
    done
}

# Debian's root is merged-/usr (lib -> usr/lib): name the real directory, since an absolute
# link would resolve inside this initrd. The mount point is made on the VM's own overlay.
mount_modules() {
    base=/newroot/lib/modules
    [ -L /newroot/lib ] && base=/newroot/usr/lib/modules
    target="$base/$(uname -r)"
    wait_for_disk "$1"
    mkdir -p "$target" || fail "cannot create $target for the modules disk"
    mount -t ext4 -o ro "$1" "$target" || fail "cannot mount the modules disk $1 on $target"
}

mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r module; do
    insmod "/lib/modules/$module" || echo "harness-initrd: insmod $module failed" >/dev/console
done </etc/modules.load

root=/dev/vda
modules=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        harness.root=*) root="${arg#harness.root=}" ;;
        harness.modules=*) modules="${arg#harness.modules=}" ;;
    esac
done
wait_for_disk "$root"
mount -t ext4 "$root" /newroot || fail "cannot mount $root"
[ -n "$modules" ] && mount_modules "$modules"
umount /sys /proc
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/harness-init
