# SPDX-License-Identifier: MIT
"""vfio-harness: a conformance and stress harness for the Linux VFIO mdev framework."""

__version__ = "0.1.0"
