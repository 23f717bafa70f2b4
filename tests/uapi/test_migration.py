# SPDX-License-Identifier: MIT
"""VFIO migration v2: the state machine's arcs and refused arcs, DEVICE_FEATURE bad input, and
one save/restore into a second instance. (tests/vm/test_migration.py covers the stream in
depth.)"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
from collections.abc import Callable, Iterator

import pytest

from harness.mdev import MdevDevice, MdevType
from harness.refdev import RefDevice
from harness.refdev import pci_config as pci
from harness.refdev import registers as r
from harness.uapi import IommuMode, Migration, MigrationDataFd, MigState, OpenDevice
from harness.uapi.errors import errno_name
from harness.uapi.raw import vfio as v
from tests.uapi import util
from tests.uapi.util import raises_errno

STATES = [
    MigState.STOP,
    MigState.RUNNING,
    MigState.STOP_COPY,
    MigState.RESUMING,
    MigState.RUNNING_P2P,
    MigState.PRE_COPY,
    MigState.PRE_COPY_P2P,
]
# Arcs the core refuses whatever the path (vfio_mig_get_next_state gives ERROR).
REFUSED = {
    (MigState.STOP_COPY, MigState.PRE_COPY),
    (MigState.STOP_COPY, MigState.PRE_COPY_P2P),
}
# States with a data transfer session; moving between them keeps the session's fd.
STREAMS = (MigState.STOP_COPY, MigState.RESUMING, MigState.PRE_COPY, MigState.PRE_COPY_P2P)
PRE_COPY_SESSION = (MigState.PRE_COPY, MigState.PRE_COPY_P2P, MigState.STOP_COPY)
FEATURE = ctypes.sizeof(v.vfio_device_feature)
MIG_STATE = ctypes.sizeof(v.vfio_device_feature_mig_state)
DMA_LOGGING_START = v.VFIO_DEVICE_FEATURE_DMA_LOGGING_START
DMA_LOGGING_REPORT = v.VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT


def state_id(state: MigState) -> str:
    return state.name.lower()


def migration(opened: OpenDevice) -> tuple[Migration, int]:
    """The device's migration interface and flags; skip if it cannot migrate."""
    mig = Migration(opened.device)
    try:
        flags = mig.flags()
    except OSError as exc:
        if exc.errno != errno.ENOTTY:
            raise
        util.require("migration", False, "the device does not migrate (FEATURE_MIGRATION)")
        raise AssertionError("unreachable") from None
    return mig, flags


def require_state(flags: int, state: MigState) -> None:
    if state in (MigState.RUNNING_P2P, MigState.PRE_COPY_P2P) and not flags & v.VFIO_MIGRATION_P2P:
        pytest.skip("the device has no P2P states (VFIO_MIGRATION_P2P)")
    if state in (MigState.PRE_COPY, MigState.PRE_COPY_P2P):
        util.require(
            "pre-copy",
            bool(flags & v.VFIO_MIGRATION_PRE_COPY),
            "the device or kernel has no PRE_COPY states (VFIO_MIGRATION_PRE_COPY)",
        )


@contextlib.contextmanager
def data_fds() -> Iterator[list[MigrationDataFd]]:
    fds: list[MigrationDataFd] = []
    try:
        yield fds
    finally:
        for fd in fds:
            fd.close()


@contextlib.contextmanager
def data_fd(mig: Migration, state: MigState) -> Iterator[MigrationDataFd]:
    """The data fd of an arc that must open one, closed afterwards."""
    with data_fds() as fds:
        fd = mig.set_state(state)
        assert fd is not None, f"no data fd for {state.name}"
        fds.append(fd)
        yield fd


def test_migration_flags(opened: OpenDevice) -> None:
    _, flags = migration(opened)
    assert flags & v.VFIO_MIGRATION_STOP_COPY, f"migration flags {flags:#x}"


def test_initial_state_is_running(opened: OpenDevice) -> None:
    mig, _ = migration(opened)
    assert mig.state() == MigState.RUNNING


@pytest.mark.parametrize(("start", "end"), list(itertools.product(STATES, STATES)), ids=state_id)
def test_arc(opened: OpenDevice, start: MigState, end: MigState) -> None:
    mig, flags = migration(opened)
    require_state(flags, start)
    require_state(flags, end)
    # Leaving RESUMING checks the stream: give it a complete one, saved from this device.
    stream = save(mig) if start == MigState.RESUMING else b""
    with data_fds() as fds:
        fd = mig.set_state(start)
        if fd is not None:
            fds.append(fd)
            fd.write_all(stream)
        assert mig.state() == start
        if (start, end) in REFUSED:
            with raises_errno(errno.EINVAL):
                mig.set_state(end)
            assert mig.state() == start, "a refused arc changed the state"
            return
        fd = mig.set_state(end)
        if fd is not None:
            fds.append(fd)
        assert mig.state() == end
        same_session = start in PRE_COPY_SESSION[:2] and end in PRE_COPY_SESSION
        if end != start and end in STREAMS and not same_session:
            assert fd is not None, f"no data fd on entering {end.name}"
        if same_session:
            assert fd is None, f"{start.name} -> {end.name} must keep the PRE_COPY data fd"


@pytest.mark.parametrize("state", [MigState.ERROR, 8, 0xFFFF], ids=["error", "8", "0xffff"])
def test_set_invalid_state(opened: OpenDevice, state: int) -> None:
    mig, _ = migration(opened)
    with raises_errno(errno.EINVAL):
        mig.set_state(state)
    assert mig.state() == MigState.RUNNING


def test_resuming_empty_stream_refused(opened: OpenDevice) -> None:
    mig, _ = migration(opened)
    with data_fd(mig, MigState.RESUMING):
        with raises_errno(errno.EINVAL):  # an incomplete stream must fail the arc
            mig.set_state(MigState.STOP)
        assert mig.state() in (MigState.RESUMING, MigState.ERROR)
    opened.device.reset()
    assert mig.state() == MigState.RUNNING


def test_reset_returns_to_running(opened: OpenDevice) -> None:
    mig, _ = migration(opened)
    mig.set_state(MigState.STOP)
    opened.device.reset()
    assert mig.state() == MigState.RUNNING


@pytest.mark.core_only
def test_feature_get_and_set(opened: OpenDevice) -> None:
    migration(opened)
    flags = v.VFIO_DEVICE_FEATURE_GET | v.VFIO_DEVICE_FEATURE_SET
    with raises_errno(errno.EINVAL):
        opened.device.feature(flags | v.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, bytes(MIG_STATE))


@pytest.mark.core_only
def test_feature_probe(opened: OpenDevice) -> None:
    migration(opened)
    opened.device.probe_feature(v.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, get=True, set=True)
    opened.device.probe_feature(v.VFIO_DEVICE_FEATURE_MIGRATION, get=True)


@pytest.mark.core_only
def test_feature_set_migration_flags_refused(opened: OpenDevice) -> None:
    migration(opened)
    with raises_errno(errno.EINVAL):  # VFIO_DEVICE_FEATURE_MIGRATION is GET-only
        opened.device.feature(v.VFIO_DEVICE_FEATURE_SET | v.VFIO_DEVICE_FEATURE_MIGRATION, bytes(8))


@pytest.mark.core_only
def test_feature_state_data_too_short(opened: OpenDevice) -> None:
    migration(opened)
    flags = v.VFIO_DEVICE_FEATURE_GET | v.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE
    with raises_errno(errno.EINVAL):
        opened.device.feature(flags, bytes(MIG_STATE - 1))


@pytest.mark.core_only
def test_feature_argsz_too_small(opened: OpenDevice) -> None:
    flags = v.VFIO_DEVICE_FEATURE_GET | v.VFIO_DEVICE_FEATURE_MIGRATION
    with raises_errno(errno.EINVAL):
        opened.device.feature(flags, bytes(8), argsz=FEATURE - 1)


@pytest.mark.core_only
def test_feature_unknown(opened: OpenDevice) -> None:
    with raises_errno(errno.ENOTTY):
        opened.device.feature(v.VFIO_DEVICE_FEATURE_GET | 0xFFFF, bytes(8))


@pytest.mark.core_only
def test_feature_unknown_flag_bits(opened: OpenDevice) -> None:
    flags = v.VFIO_DEVICE_FEATURE_GET | v.VFIO_DEVICE_FEATURE_MIGRATION | 1 << 20
    with raises_errno(errno.EINVAL):
        opened.device.feature(flags, bytes(8))


def test_dma_logging_probe(opened: OpenDevice) -> None:
    """Device DMA dirty logging: unknown to a driver without it (ENOTTY); a driver that offers
    it must refuse a REPORT without START (EINVAL). (Neither the kernel's samples nor ours
    offer it: type1's dirty bitmap covers what an mdev pins.)"""
    try:
        opened.device.probe_feature(DMA_LOGGING_START, set=True)
    except OSError as exc:
        assert exc.errno == errno.ENOTTY, f"probe failed with errno {exc.errno}, not ENOTTY"
        util.require("dirty-logging", False, "the device has no DMA dirty logging")
    report = bytes(ctypes.sizeof(v.vfio_device_feature_dma_logging_report))
    with raises_errno(errno.EINVAL):
        opened.device.feature(v.VFIO_DEVICE_FEATURE_GET | DMA_LOGGING_REPORT, report)


# -- save and restore into a second instance --------------------------------------------------


def save(mig: Migration) -> bytes:
    with data_fd(mig, MigState.STOP_COPY) as fd:
        data = fd.read_all()
        mig.set_state(MigState.STOP)
    return data


def restore(mig: Migration, data: bytes) -> None:
    mig.set_state(MigState.STOP)
    with data_fd(mig, MigState.RESUMING) as fd:
        fd.write_all(data)
        mig.set_state(MigState.STOP)
    mig.set_state(MigState.RUNNING)


@pytest.fixture
def target(make_mdev: Callable[[], MdevDevice], iommu_mode: IommuMode) -> Iterator[OpenDevice]:
    with util.open_device(make_mdev(), iommu_mode) as opened:
        yield opened


def test_save_restore_round_trip(opened: OpenDevice, target: OpenDevice) -> None:
    source, _ = migration(opened)
    data = save(source)
    assert data, "STOP_COPY produced no data"
    restore(Migration(target.device), data)
    assert Migration(target.device).state() == MigState.RUNNING


@pytest.mark.refdev
def test_round_trip_moves_device_state(
    opened: OpenDevice, ref: RefDevice, target: OpenDevice
) -> None:
    memory = os.urandom(4096)
    ref.mem_write(0x2000, memory)
    ref.write32(r.REG_SCRATCH0 + 4, 0xC0FFEE)
    ref.config.write_int(pci.INTERRUPT_LINE, 1, 0x2B)
    restore(Migration(target.device), save(Migration(opened.device)))
    moved = RefDevice(target.device)
    assert moved.mem_read(0x2000, 4096) == memory
    assert moved.read32(r.REG_SCRATCH0 + 4) == 0xC0FFEE
    assert moved.config.read_int(pci.INTERRUPT_LINE, 1) == 0x2B


@pytest.mark.refdev
def test_corrupt_stream_refused(opened: OpenDevice, target: OpenDevice) -> None:
    Migration(opened.device)
    ref = RefDevice(opened.device)
    ref.mem_write(0, b"x" * 64)
    data = bytearray(save(Migration(opened.device)))
    data[len(data) // 2] ^= 0xFF
    mig = Migration(target.device)
    mig.set_state(MigState.STOP)
    with data_fds() as fds, raises_errno(errno.EINVAL):
        fd = mig.set_state(MigState.RESUMING)
        assert fd is not None
        fds.append(fd)
        fd.write_all(bytes(data))
        mig.set_state(MigState.STOP)
    target.device.reset()
    assert RefDevice(target.device).mem_read(0, 64) == bytes(64), "a bad stream was applied"


@pytest.mark.refdev
def test_data_fd_after_session_end(opened: OpenDevice) -> None:
    mig = Migration(opened.device)
    with data_fd(mig, MigState.STOP_COPY) as fd:
        mig.set_state(MigState.STOP)
        with raises_errno(errno.ENODEV):
            fd.read_all()


@pytest.mark.refdev
def test_data_fd_not_seekable(opened: OpenDevice) -> None:
    mig = Migration(opened.device)
    with data_fd(mig, MigState.STOP_COPY) as fd, raises_errno(errno.ESPIPE):
        os.pread(fd.fd, 16, 0)


@pytest.mark.refdev
def test_a_removed_device_gives_back_its_instance_while_a_data_fd_is_open(
    mdev_type: MdevType, make_mdev: Callable[[], MdevDevice], iommu_mode: IommuMode
) -> None:
    """The data fd keeps the driver's state alive for its reads to fail cleanly, not the
    device's place: once removed, available_instances is back and a new device fits."""
    device = make_mdev()
    after_create = mdev_type.available_instances
    with util.open_device(device, iommu_mode) as opened, data_fds() as fds:
        mig = Migration(opened.device)
        mig.set_state(MigState.STOP)
        fd = mig.set_state(MigState.STOP_COPY)
        assert fd is not None, "no data fd for STOP_COPY"
        fds.append(fd)
        opened.close()
        device.remove()
        assert mdev_type.available_instances == after_create + 1, (
            "the removed device still holds its instance while its data fd is open"
        )
        make_mdev()  # where the removed one was
        with raises_errno(errno.ENODEV):
            fd.read_all()


# -- PRE_COPY's accounting and the STOP_COPY size estimate (include/uapi/linux/vfio.h) ---------

PRE_COPY_READ = 4096
PRE_COPY_LIMIT = 256 << 20  # read this much without reaching the temporary end: it never comes


def pre_copy(opened: OpenDevice) -> Migration:
    mig, flags = migration(opened)
    require_state(flags, MigState.PRE_COPY)
    return mig


def counts(fd: MigrationDataFd) -> tuple[int, int]:
    info = fd.precopy_info()
    return int(info.initial_bytes), int(info.dirty_bytes)


def read_to_temporary_end(fd: MigrationDataFd) -> int:
    """Read until read() fails with ENOMSG (pre-copy's temporary end); the bytes read.
    initial_bytes must never grow meanwhile."""
    read, left = 0, counts(fd)[0]
    while True:
        try:
            chunk = os.read(fd.fd, PRE_COPY_READ)
        except OSError as exc:
            assert exc.errno == errno.ENOMSG, (
                f"read() at the temporary end failed with {errno_name(exc.errno or 0)}, not ENOMSG"
            )
            return read
        assert chunk, "read() returned 0 (the permanent end) in PRE_COPY"
        read += len(chunk)
        now, _ = counts(fd)
        assert now <= left, f"initial_bytes grew from {left} to {now} while data was read"
        left = now
        assert read <= PRE_COPY_LIMIT, f"no temporary end after {read} bytes"


def test_pre_copy_data_runs_down_to_a_temporary_end(opened: OpenDevice) -> None:
    """initial_bytes starts non-zero and decreases as data is read, dirty_bytes starts at zero,
    and the temporary end of stream (both zero) is read() failing with ENOMSG."""
    mig = pre_copy(opened)
    with data_fd(mig, MigState.PRE_COPY) as fd:
        initial, dirty = counts(fd)
        assert initial > 0, "initial_bytes is 0 on entering PRE_COPY"
        assert dirty == 0, f"dirty_bytes is {dirty} on entering PRE_COPY (it starts at zero)"
        read = read_to_temporary_end(fd)
        assert counts(fd) == (0, 0), "read() said ENOMSG, but there are bytes left to read"
        assert read >= initial, f"initial_bytes said {initial}, but only {read} came"


@pytest.mark.refdev
def test_memory_written_in_pre_copy_comes_again_as_dirty_data(
    opened: OpenDevice, ref: RefDevice
) -> None:
    mig = pre_copy(opened)
    with data_fd(mig, MigState.PRE_COPY) as fd:
        read_to_temporary_end(fd)
        ref.mem_write(0x3000, os.urandom(64))
        initial, dirty = counts(fd)
        assert initial == 0 and dirty > 0, f"after a write: initial {initial}, dirty {dirty}"
        assert read_to_temporary_end(fd) >= dirty
        assert counts(fd) == (0, 0)


def test_precopy_info_outside_pre_copy_fails_with_einval(opened: OpenDevice) -> None:
    """PRE_COPY -> STOP_COPY keeps the data fd; the ioctl is for the PRE_COPY states only."""
    mig = pre_copy(opened)
    with data_fd(mig, MigState.PRE_COPY) as fd:
        assert mig.set_state(MigState.STOP_COPY) is None
        with raises_errno(errno.EINVAL):
            fd.precopy_info()


def test_precopy_info_argsz_too_small_fails_with_einval(opened: OpenDevice) -> None:
    mig = pre_copy(opened)
    with data_fd(mig, MigState.PRE_COPY) as fd:
        short = v.vfio_precopy_info(argsz=8)  # below the end of dirty_bytes
        with raises_errno(errno.EINVAL):
            fd.ioctl(v.VFIO_MIG_GET_PRECOPY_INFO, "VFIO_MIG_GET_PRECOPY_INFO", short)


def stop_copy_estimate(mig: Migration) -> int:
    try:
        return mig.data_size()
    except OSError as exc:
        if exc.errno != errno.ENOTTY:
            raise
        pytest.skip("the driver or kernel has no VFIO_DEVICE_FEATURE_MIG_DATA_SIZE")


def test_stop_copy_size_estimate_is_given(opened: OpenDevice) -> None:
    mig, _ = migration(opened)
    assert stop_copy_estimate(mig) > 0, "MIG_DATA_SIZE estimates an empty STOP_COPY stream"


@pytest.mark.refdev
def test_stop_copy_size_estimate_is_the_streams_size(opened: OpenDevice) -> None:
    mig, _ = migration(opened)
    estimate = stop_copy_estimate(mig)
    assert estimate == len(save(mig))
