# SPDX-License-Identifier: MIT
"""tests/lava: LAVA's own dispatcher runs our job (`tox -e lava`)."""

from tests.vm.conftest import package

__all__ = ["package"]  # the wheel, built once per session as a release is
