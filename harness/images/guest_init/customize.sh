#!/bin/sh
# SPDX-License-Identifier: MIT
# mmdebstrap customize hook: customize.sh ROOTFS GUEST_INIT_DIR [INIT]
# Installs the guest set-up and, by the recipe's init (harness, the default, or systemd), the
# harness's own PID 1 and power commands or a unit that runs the set-up under systemd; refreshes
# modules.dep and makes the SSH host key (by chroot, so the guest's own depmod and dropbearkey
# run: the host may have neither).
set -eu
root="$1"
files="$2"
init="${3:-harness}"

install -m 0755 "$files/guest_setup.sh" "$root/sbin/harness-guest-setup"
case "$init" in
harness)
    install -m 0755 "$files/harness_init.sh" "$root/sbin/harness-init"
    for command in poweroff reboot halt; do
        if [ -e "$root/sbin/$command" ]; then
            echo "customize.sh: /sbin/$command exists: an init system (systemd-sysv?) was" \
                "pulled in; the guest runs harness-init instead. Add initramfs-tools to the" \
                "recipe's packages if dracut pulled it, find the package with dpkg -S, or set" \
                'init = "systemd" in the recipe.' >&2
            exit 1
        fi
        install -m 0755 "$files/power.sh" "$root/sbin/$command"
    done
    ;;
systemd)
    if [ ! -x "$root/lib/systemd/systemd" ]; then
        echo 'customize.sh: init = "systemd" but the image has no /lib/systemd/systemd: add' \
            "systemd-sysv to the recipe's packages" >&2
        exit 1
    fi
    # The initrd switches to /sbin/harness-init on every image; exec keeps systemd PID 1.
    printf '#!/bin/sh\nexec /lib/systemd/systemd "$@"\n' >"$root/sbin/harness-init"
    chmod 0755 "$root/sbin/harness-init"
    install -m 0644 "$files/harness-guest.service" "$root/etc/systemd/system/harness-guest.service"
    mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
    ln -sf /etc/systemd/system/harness-guest.service \
        "$root/etc/systemd/system/multi-user.target.wants/harness-guest.service"
    # eth0, as guest_setup.sh configures it: no predictable interface names.
    mkdir -p "$root/etc/systemd/network"
    ln -sf /dev/null "$root/etc/systemd/network/99-default.link"
    # The serial console carries the kernel's log and HARNESS-READY, not a login prompt.
    ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
    ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
    ;;
*)
    echo "customize.sh: unknown init '$init' (harness or systemd)" >&2
    exit 1
    ;;
esac

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
