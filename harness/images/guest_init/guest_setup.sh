#!/bin/sh
# SPDX-License-Identifier: MIT
# The guest's set-up (/sbin/harness-guest-setup), run by harness-init on init = "harness" images
# and by harness-guest.service on init = "systemd" ones: root's SSH key, the static network,
# the VFIO modules and the SSH server; then HARNESS-READY on the console, which the host waits
# for. Kernel command line:
#   harness.authkey=<base64 of an authorized_keys line>  root's key for SSH (required to log in)
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

say() { echo "harness-guest-setup: $*" >/dev/console; }

authkey=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        harness.authkey=*) authkey="${arg#harness.authkey=}" ;;
    esac
done
mkdir -p /root/.ssh
chmod 700 /root/.ssh
if [ -n "$authkey" ]; then
    echo "$authkey" | base64 -d >/root/.ssh/authorized_keys || say "harness.authkey is not base64"
    chmod 600 /root/.ssh/authorized_keys
else
    say "no harness.authkey= on the kernel command line: SSH logins will be refused"
fi

modprobe -a virtio_net 2>/dev/null
# Under systemd, udev announces eth0 a moment after this unit may start.
tries=0
while [ ! -e /sys/class/net/eth0 ] && [ "$tries" -lt 100 ]; do
    tries=$((tries + 1))
    sleep 0.1
done
[ -e /sys/class/net/eth0 ] || say "no eth0 after 10 s: SSH will not be reachable (ip link: $(ip -o link | cut -d: -f2 | tr -d '\n'))"
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
echo "nameserver 10.0.2.3" >/etc/resolv.conf

modprobe -a vfio vfio_iommu_type1 mdev || say "modprobe -a vfio vfio_iommu_type1 mdev failed"

# Under systemd, udev loads modules for the hardware it finds (kvm_amd, on a CPU with svm) a
# while after boot: settle first, so that the VM's state (and a saved one) no longer changes
# under the tests.
if [ -d /run/systemd/system ]; then
    udevadm settle --timeout=60 || say "udevadm settle timed out"
fi

dropbear -s -r /etc/dropbear/harness_host_key -p 22 -P /run/dropbear.pid || say "dropbear failed"
echo "HARNESS-READY" >/dev/console
