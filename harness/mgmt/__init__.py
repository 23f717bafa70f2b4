# SPDX-License-Identifier: MIT
"""The management stack on a host that serves VMs, checked from inside a guest (L1): mdevctl's
persistent definitions against our sysfs view (`mdevctl_checks.py`), libvirt domains with our
mdev as a hostdev (`libvirt_checks.py`). Standard library only, like `nested` below it: the
checks run in the trixie-libvirt image (vm_images/nested/) through harness.vm.guest_python.
"""
