# SPDX-License-Identifier: MIT
"""The names of the user properties the plugin puts on test reports, which the report writers
(KTAP, verdicts, JUnit) read back: they travel with the reports from xdist workers."""

from __future__ import annotations

KERNEL = "kernel"  # the release the guest ran (uname -r)
KERNEL_CHOICE = "kernel_choice"  # the --kernel entry the test was collected for
ACCELERATOR = "accelerator"
KERNEL_SPLAT = "kernel_splat"  # "kind fingerprint headline", one per finding
# Why a test did not end by itself: "timeout" (it, or its guest, hung) or "error" (its VM
# did not start, or the guest died under it).
INTERRUPTED = "interrupted"

__all__ = ["ACCELERATOR", "INTERRUPTED", "KERNEL", "KERNEL_CHOICE", "KERNEL_SPLAT"]
