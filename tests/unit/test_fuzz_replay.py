# SPDX-License-Identifier: MIT
"""A reproducer recognises its finding's report in a later run, whatever that run's numbers."""

from __future__ import annotations

from harness.fuzz.replay import LEAK_HEADLINE, REPORT, same_report

FOUND = (
    "WARNING: CPU: 1 PID: 107 at /tmp/kmod-build-fe_cbcfb/kmod-ixnlev0q/main.c:541 "
    "hmdev_ioctl+0x7d5/0xa00 [vfio_harness_mdev]"
)
LATER = (
    "[  812.004511] WARNING: CPU: 0 PID: 2291 at /tmp/kmod-build-a1_0ff/kmod-zz81k/main.c:541 "
    "hmdev_ioctl+0x7d9/0xa10 [vfio_harness_mdev]"
)


def test_the_same_warning_from_another_run_and_build_is_recognised() -> None:
    assert REPORT.search(LATER)
    assert same_report(LATER) == same_report(FOUND)
    assert same_report(FOUND) == (
        "WARNING: CPU: N PID: N at main.c:N hmdev_ioctl [vfio_harness_mdev]"
    )


def test_another_report_is_not_the_finding() -> None:
    other = "[ 9.1] WARNING: CPU: 0 PID: 1 at irq.c:88 hmdev_set_irqs+0x10/0xa0 [vfio_harness_mdev]"
    lockdep = "[ 9.1] WARNING: possible circular locking dependency detected"
    assert same_report(other) != same_report(FOUND)  # another place in the driver
    assert REPORT.search(lockdep) and same_report(lockdep) != same_report(FOUND)
    kasan = "[ 3.2] BUG: KASAN: slab-out-of-bounds in hmdev_dma_run+0x1c4/0x2a0 [vfio_harness_mdev]"
    assert (
        same_report(kasan) == "BUG: KASAN: slab-out-of-bounds in hmdev_dma_run [vfio_harness_mdev]"
    )


def test_a_leak_headline_names_the_allocating_function() -> None:
    headline = (
        "kmemleak: unreferenced object 0xffff888009a1c400 (size 256), allocated in hmdev_ioctl"
    )
    match = LEAK_HEADLINE.match(headline)
    assert match and match.group(1) == "hmdev_ioctl"
    assert LEAK_HEADLINE.match(FOUND) is None
