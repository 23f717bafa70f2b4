# SPDX-License-Identifier: MIT
"""The vfio-harness pytest plugin (entry point `pytest11: vfio_harness`).

It is loaded by every pytest run in an environment where vfio-harness is installed, so it stays
cheap to import: options, markers and the VM policy here; fixtures that boot VMs arrive with the
VM layer and import it lazily.
"""

from __future__ import annotations

import os

import pytest

from harness.plugin.policy import REQUIRE_VM_ENV


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vfio-harness")
    group.addoption(
        "--require-vm",
        action="store_true",
        default=False,
        help=f"a missing QEMU, image or module fails the test instead of skipping it "
        f"(same as {REQUIRE_VM_ENV}=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vm: needs a booted guest; skipped without one unless VMs are required"
    )
    if config.getoption("--require-vm"):
        # The environment, not config, so that xdist workers and subprocesses see it too.
        os.environ[REQUIRE_VM_ENV] = "1"
