#!/bin/sh
# SPDX-License-Identifier: MIT
# mmdebstrap customize hook: customize.sh ROOTFS GUEST_INIT_DIR
# Installs the harness init and power commands, refreshes modules.dep and makes the SSH host key
# (by chroot, so the guest's own depmod and dropbearkey run: the host may have neither).
set -eu
root="$1"
files="$2"

install -m 0755 "$files/harness_init.sh" "$root/sbin/harness-init"
for command in poweroff reboot halt; do
    if [ -e "$root/sbin/$command" ]; then
        echo "customize.sh: /sbin/$command exists: an init system (systemd-sysv?) was pulled" \
            "in; the guest runs harness-init instead. Add initramfs-tools to the recipe's" \
            "packages if dracut pulled it, or find the package with dpkg -S." >&2
        exit 1
    fi
    install -m 0755 "$files/power.sh" "$root/sbin/$command"
done

for release in $(ls "$root/lib/modules"); do
    chroot "$root" depmod -a "$release"
done

mkdir -p "$root/etc/dropbear"
rm -f "$root"/etc/dropbear/*_host_key "$root/etc/dropbear/harness_host_key"
chroot "$root" dropbearkey -t ed25519 -f /etc/dropbear/harness_host_key >/dev/null
chroot "$root" dropbearkey -y -f /etc/dropbear/harness_host_key |
    grep '^ssh-ed25519 ' >"$root/etc/dropbear/harness_host_key.pub"

echo "harness-guest" >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 harness-guest\n' >"$root/etc/hosts"
: >"$root/etc/fstab"
