# SPDX-License-Identifier: MIT
"""Clients of QEMU's own protocols, standard library only, for the host's VMs and for the QEMU
that a guest runs (harness.nested): QMP (qmp.py), qtest (qtest.py), and the line reader both
use (lines.py)."""
