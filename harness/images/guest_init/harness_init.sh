#!/bin/sh
# SPDX-License-Identifier: MIT
# The guest's PID 1 (/sbin/harness-init) on images with init = "harness" (the default): no
# systemd, just what a test VM needs. Kernel command line:
#   harness.authkey=...  read by /sbin/harness-guest-setup (guest_setup.sh)
#   harness.shell=TTY  also a root shell on /dev/TTY, respawned: what a console-driven lab (LAVA's
#                      test shell) or a developer at the serial console types into
# Prints HARNESS-READY on the console once the SSH server listens; `poweroff`, `reboot` and
# `halt` (signals to PID 1) unmount cleanly and power the VM off or reboot it.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

say() { echo "harness-init: $*" >/dev/console; }

stop() {
    say "$1"
    [ -f /run/dropbear.pid ] && kill "$(cat /run/dropbear.pid)" 2>/dev/null
    sync
    mount -o remount,ro / 2>/dev/null
    busybox "$1" -f
}
trap 'stop poweroff' USR2
trap 'stop poweroff' USR1
trap 'stop reboot' TERM

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
# The lockdown state, and (on a UEFI boot) the EFI variables mokutil reads.
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
[ -d /sys/firmware/efi/efivars ] && mount -t efivarfs efivarfs /sys/firmware/efi/efivars
hostname harness-guest

shell_tty=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        harness.shell=*) shell_tty="${arg#harness.shell=}" ;;
    esac
done

# Root's SSH key, network, VFIO modules, the SSH server, then HARNESS-READY on the console.
/sbin/harness-guest-setup

if [ -n "$shell_tty" ]; then
    if [ -c "/dev/$shell_tty" ]; then
        # setsid -c: the tty becomes the shell's controlling terminal, so Ctrl-C reaches it.
        # A background list starts with SIGINT and SIGQUIT ignored, and dash keeps a signal
        # ignored on entry ignored, even interactive: env puts them back, or Ctrl-C would stop
        # nothing typed at the console.
        (
            while :; do
                HOME=/root PS1='root@harness-guest:~# ' TERM=vt100 \
                    setsid -c env --default-signal=INT,QUIT sh -i <>"/dev/$shell_tty" >&0 2>&1
                sleep 1
            done
        ) &
    else
        say "harness.shell=$shell_tty: no /dev/$shell_tty"
    fi
fi

while :; do
    sleep 3600 &
    wait $!
done
