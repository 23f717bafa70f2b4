# SPDX-License-Identifier: MIT
"""The coverage-guided fuzzer's guest side (standard library and harness.uapi only): KCOV
feedback for the calling thread (`kcov`). Its programs over the UAPI and their executor come
next (issue 18)."""
