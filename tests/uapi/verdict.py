# SPDX-License-Identifier: MIT
"""How bad a failure is, and where in the UAPI it is (harness.plugin.verdicts sums them up).

- safety: the driver accepted an access outside a region, put data at the wrong offset, leaked
  memory or kernel data, or the kernel logged a splat during the test (the plugin adds that);
- uapi: a deviation from the UAPI: a wrong errno, argsz handling, flags that lie, a missing
  effect (the default for any other failure);
- missing: the driver lacks a capability that --expect asked for.

Tests raise SafetyError or MissingCapabilityError where the failure is of those kinds; a plain
assertion is a UAPI deviation.
"""

from __future__ import annotations

import os

SAFETY, UAPI, MISSING = "safety", "uapi", "missing"
AREAS = {
    "test_info.py": "info",
    "test_profile.py": "info",
    "test_region_rw.py": "regions",
    "test_regions.py": "regions",
    "test_mmap.py": "mmap",
    "test_irq.py": "irqs",
    "test_dma_map.py": "dma",
    "test_device_dma.py": "dma",
    "test_reset.py": "reset",
    "test_migration.py": "migration",
    "test_mdev_lifecycle.py": "lifecycle",
    "test_setup.py": "setup",
}


class SafetyError(AssertionError):
    """The driver did something unsafe: an out-of-range access accepted, data at the wrong
    offset, memory or data leaked."""


class MissingCapabilityError(AssertionError):
    """The driver lacks a capability the run was told to expect (--expect)."""


def severity_of(exc: BaseException) -> str:
    if isinstance(exc, SafetyError):
        return SAFETY
    if isinstance(exc, MissingCapabilityError):
        return MISSING
    return UAPI


def area_of(file_name: str) -> str:
    return AREAS.get(file_name, os.path.splitext(file_name)[0].removeprefix("test_"))
