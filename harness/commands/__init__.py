# SPDX-License-Identifier: MIT
"""Subcommand groups of `vfio-harness`, one module each; imported only when used."""
