# SPDX-License-Identifier: MIT
"""Races (reference device): the DMA engine copying in one thread while other threads unmap and
map its range, reset the device, or open a second device in the same container or IOAS.

The bugs these find crash the kernel (type1 BUG()s when a driver leaves a page of an unmapped
range pinned; iommufd WARNs and fails the unmap with EDEADLK) or deadlock it, so a failing run
shows as a splat or a dead guest. Each race runs for RACE_SECONDS or RACE_ROUNDS rounds,
whichever ends first (longer, up to RACE_MAX_SECONDS, until a copy has completed), and must
have raced: DMA completed during it and the other thread went round. Afterwards nothing may
be left: no page pinned, every pin unpinned, and the device copies correctly again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from harness.mdev import MdevDevice
from harness.refdev import Direction, Method, RefDevice
from harness.refdev.device import dma_command
from harness.uapi import PAGE_SIZE, DmaBuffer, Group, OpenDevice
from harness.uapi.open_device import IommufdMapper, Type1Mapper, open_iommufd
from tests.uapi import util
from tests.uapi.concurrent import CLEARED, DmaLoop, Repeat
from tests.uapi.util import IOVA

# HARNESS_STRESS_SECONDS (tox -e stress) makes each race longer than the suite's 3 s.
RACE_SECONDS = float(os.environ.get("HARNESS_STRESS_SECONDS") or 3)
RACE_ROUNDS = round(2000 * RACE_SECONDS / 3)
# On a loaded TCG host a copy can lose every window in RACE_SECONDS (a reset wins them all):
# the race goes on until one copy has completed, up to this.
RACE_MAX_SECONDS = RACE_SECONDS + 12

# A race that finds a bug may hang the guest: it gets its VM replaced after this, not the
# suite's --guest-timeout.
pytestmark = [pytest.mark.refdev, pytest.mark.guest_timeout(RACE_MAX_SECONDS + 15)]
BUFFER = 128 * PAGE_SIZE
# Two of the engine's pin batches' worth would be 1024 pages; a shorter copy races more often.
COPY = 64 * PAGE_SIZE


@dataclass(frozen=True)
class Copy:
    method: Method
    keep_pinned: bool

    @property
    def command(self) -> int:
        return dma_command(Direction.TO_DEVICE, self.method, self.keep_pinned)

    def loop(self, ref: RefDevice) -> DmaLoop:
        return DmaLoop(ref, self.command, keeps_pins=self.keep_pinned)


COPIES = [
    pytest.param(Copy(Method.PIN, keep_pinned=False), id="pin"),
    pytest.param(Copy(Method.PIN, keep_pinned=True), id="pin-kept"),
    pytest.param(Copy(Method.RW, keep_pinned=False), id="dma_rw"),
]


def race(step: Callable[[], None], loop: DmaLoop) -> int:
    """Run `step` until RACE_SECONDS or RACE_ROUNDS, and on until `loop` has completed a copy
    (at most RACE_MAX_SECONDS in all); the rounds done."""
    start = time.monotonic()
    rounds = 0
    while True:
        elapsed = time.monotonic() - start
        long_enough = rounds >= RACE_ROUNDS or elapsed >= RACE_SECONDS
        if (long_enough and loop.outcomes["done"] > 0) or elapsed >= RACE_MAX_SECONDS:
            return rounds
        step()
        rounds += 1


def program(ref: RefDevice) -> None:
    ref.program(IOVA, 0, COPY)


def check_nothing_left(ref: RefDevice, opened: OpenDevice, buffer: DmaBuffer) -> None:
    """No page pinned, every pin unpinned, and a copy is right again."""
    opened.dma.unmap_all()  # unpins what a kept copy still holds
    counters = ref.counters()
    assert counters.pinned_pages == 0, f"{counters.pinned_pages} page(s) still pinned"
    assert counters.total_pins == counters.total_unpins, (
        f"{counters.total_pins} pages pinned, {counters.total_unpins} unpinned"
    )
    opened.dma.map_buffer(IOVA, buffer)
    data = os.urandom(COPY)
    buffer.write(0, data)
    ref.dma(IOVA, 0, COPY, Direction.TO_DEVICE).check("a copy after the race")
    assert ref.mem_read(0, COPY) == data


@pytest.fixture
def mapped(opened: OpenDevice) -> Iterator[DmaBuffer]:
    with DmaBuffer(BUFFER) as buffer:
        opened.dma.map_buffer(IOVA, buffer)
        yield buffer


@pytest.mark.parametrize("copy", COPIES)
def test_copies_race_unmap_and_map_of_their_range(
    ref: RefDevice, opened: OpenDevice, mapped: DmaBuffer, copy: Copy
) -> None:
    program(ref)

    def unmap_and_map() -> None:
        opened.dma.unmap(IOVA, BUFFER)
        opened.dma.map_buffer(IOVA, mapped)

    with copy.loop(ref) as loop:
        rounds = race(unmap_and_map, loop)
    loop.check_raced(rounds, "unmap and map of the range")
    check_nothing_left(ref, opened, mapped)


@pytest.mark.parametrize("copy", COPIES)
def test_copies_race_reset(
    ref: RefDevice, opened: OpenDevice, mapped: DmaBuffer, copy: Copy
) -> None:
    def reset_and_program() -> None:
        opened.device.reset()  # zeroes the DMA registers: program them again
        program(ref)

    program(ref)
    with copy.loop(ref) as loop:
        rounds = race(reset_and_program, loop)
    # A doorbell rung between the reset and the new program copies nothing: EINVAL (length 0).
    loop.check_raced(rounds, "reset", also=frozenset({CLEARED}))
    check_nothing_left(ref, opened, mapped)


# type1 itself deadlocks here, whatever the driver: an unmap calls .dma_unmap holding the
# container's device_list_lock, and the driver must unpin there (vfio_unpin_pages takes
# iommu->lock); opening a device takes iommu->lock, then device_list_lock. Seen on 6.1 and
# 6.12 with the reference device: both tasks blocked for good ("blocked for more than 120
# seconds"). Run it anyway with HARNESS_KERNEL_BUGS=1.
TYPE1_OPEN_DEADLOCK = (
    "known kernel issue type1-notify-unmap-lock-order: type1 deadlocks (ABBA: "
    "register_device takes iommu->lock then device_list_lock; "
    "vfio_notify_dma_unmap holds device_list_lock while the driver's .dma_unmap unpins, "
    "which takes iommu->lock), whatever the driver does: HARNESS_KERNEL_BUGS=1 runs it"
)
RUN_KERNEL_BUGS = os.environ.get("HARNESS_KERNEL_BUGS") == "1"


def open_beside(opened: OpenDevice, device: MdevDevice) -> OpenDevice:
    """`device` opened in the same type1 container, or attached to the same IOAS."""
    if isinstance(opened.dma, Type1Mapper):
        group_number = device.iommu_group
        assert group_number is not None, f"mdev {device.uuid} has no IOMMU group"
        group = Group.open(group_number)
        try:
            group.set_container(opened.dma.container)
            second = group.open_device(device.uuid)
        except BaseException:
            group.close()
            raise
        return OpenDevice(second, opened.dma, [group.close])
    assert isinstance(opened.dma, IommufdMapper)
    cdev = device.vfio_cdev
    if cdev is None:
        pytest.skip(util.NO_CDEV)
    return open_iommufd(str(cdev), iommufd=opened.dma.iommufd, ioas_id=opened.dma.ioas_id)


@pytest.mark.parametrize("copy", COPIES)
def test_copies_and_unmaps_race_a_second_device_opening_in_the_container(
    ref: RefDevice,
    opened: OpenDevice,
    mapped: DmaBuffer,
    make_mdev: Callable[[], MdevDevice],
    copy: Copy,
) -> None:
    # Opening a device in a type1 container takes the container's locks in the order its
    # unmap notifier does: a driver that waits, in .dma_unmap, for a pin that needs them hangs.
    if isinstance(opened.dma, Type1Mapper) and copy.keep_pinned and not RUN_KERNEL_BUGS:
        pytest.skip(TYPE1_OPEN_DEADLOCK)
    second = make_mdev()
    program(ref)

    def unmap_and_map() -> None:
        opened.dma.unmap(IOVA, BUFFER)
        opened.dma.map_buffer(IOVA, mapped)

    def open_and_close() -> None:
        open_beside(opened, second).close()

    with (
        copy.loop(ref) as loop,
        Repeat(unmap_and_map, "unmapper") as unmapper,
    ):
        rounds = race(open_and_close, loop)
    assert unmapper.rounds > 0, "the unmap thread never went round"
    loop.check_raced(rounds, "a second device's open and close")
    check_nothing_left(ref, opened, mapped)
