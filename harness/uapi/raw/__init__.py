# SPDX-License-Identifier: MIT
"""Raw ctypes mirrors of the kernel's VFIO and iommufd UAPI headers.

Names are the C names, unchanged, so a reader can grep `linux/vfio.h` for any of them. Nothing
here does I/O; the safe wrappers one level up do.
"""
