# SPDX-License-Identifier: MIT
"""Scripts that tests/vm send into guests and run there with harness.vm.guest_python."""
