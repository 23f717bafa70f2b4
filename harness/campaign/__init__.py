# SPDX-License-Identifier: MIT
"""`vfio-harness fuzz` on the host: the fuzzer's VMs, its corpus and coverage in the cache, and
its findings, deduplicated, minimized and written out as pytest reproducers (harness.fuzz is
the guest side)."""
