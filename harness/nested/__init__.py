# SPDX-License-Identifier: MIT
"""End to end through QEMU (issue 6): an mdev handed to a nested machine with vfio-pci.

Inside a harness VM (L1), QEMU opens our mdev with `-device vfio-pci,sysfsdev=...` and this
package plays the guest driver of the machine it presents, through one interface (`Machine`,
machine.py) with two backends:

- `QtestMachine` (qtest_machine.py): L1's QEMU runs no guest code (`-S`) and is driven over
  its qtest socket (harness.qemu.qtest): port I/O on 0xcf8/0xcfc, MMIO, guest RAM, IOAPIC
  interrupts. Fast: this is what CI runs.
- `ShellMachine` (shell_machine.py): L1's QEMU boots a tiny L2 (the image's kernel, a busybox
  initramfs from harness.core.cpio); its shell is driven over the serial console (sysfs, devmem).

steps.py holds the checks of the issue's steps 1-5, written once against `Machine`; qemu.py
starts L1's QEMU (command lines, sockets, trace log); evidence.py reads what QEMU itself says
it did (trace events, its open files, QMP). Standard library only: it runs in the guest.
"""
