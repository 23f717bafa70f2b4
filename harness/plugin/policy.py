# SPDX-License-Identifier: MIT
"""What happens when a VM-backed test cannot get what it needs.

On a developer's laptop without QEMU a VM test skips, saying why. In CI (HARNESS_REQUIRE_VM=1)
the same situation is a failure: a suite that silently skipped its VM tests proved nothing.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_VM_ENV = "HARNESS_REQUIRE_VM"


def vm_required() -> bool:
    return os.environ.get(REQUIRE_VM_ENV, "").strip() not in ("", "0", "no", "false")


def vm_unavailable(reason: str, *, required: bool | None = None) -> NoReturn:
    """Skip the current test for `reason`, or fail it when VMs are required."""
    if required if required is not None else vm_required():
        pytest.fail(
            f"{reason} ({REQUIRE_VM_ENV}=1: a missing VM prerequisite is a failure)", pytrace=False
        )
    pytest.skip(reason)
