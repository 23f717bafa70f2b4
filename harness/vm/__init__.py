# SPDX-License-Identifier: MIT
"""Disposable VMs: QEMU (qemu_cmdline.py, accel.py, qmp.py), a VM from cold boot (machine.py) or
restored from a saved booted state (saved_state.py), its console (console.py, console_watch.py),
and its clean-up whatever happens (run_dir.py, watchdog.py). It boots what harness.images and
harness.kernel prepare, talks to the guest over harness.ssh, and knows nothing of VFIO beyond
checking that the guest loaded its modules.

Kernel command line the guest understands (set by the launcher):
  harness.authkey=<base64>  base64 of root's authorized_keys line (the run's public key)
  harness.root=<device>     the root disk for the initrd (default /dev/vda)
  harness.modules=<device>  a custom kernel's modules disk (/dev/vdb), mounted read-only
"""
