# SPDX-License-Identifier: MIT
"""What every layer uses, standard library only (it is pushed into guests too): closing.py
(Closing), cache.py (the cache and its entries), resources.py (where the suite, kmod/ and
vm_images/ are), kmsg.py and debug_checks.py (the kernel log, kmemleak and lockdep, read where
the tests or the fuzzer run)."""
