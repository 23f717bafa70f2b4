# SPDX-License-Identifier: MIT
"""The one error of this layer: what is missing or failed, and what to do about it."""

from __future__ import annotations


class FirmwareError(RuntimeError):
    """UEFI firmware, a variable store or an EFI system partition could not be prepared."""
