# SPDX-License-Identifier: MIT
"""VFIO migration v2: the device state machine and the data fd it hands out."""

from __future__ import annotations

import ctypes
import enum
import os

from harness.uapi.device import Device
from harness.uapi.errors import VfioError
from harness.uapi.fdobject import FdObject
from harness.uapi.raw import vfio as v


class MigState(enum.IntEnum):
    ERROR = v.VFIO_DEVICE_STATE_ERROR
    STOP = v.VFIO_DEVICE_STATE_STOP
    RUNNING = v.VFIO_DEVICE_STATE_RUNNING
    STOP_COPY = v.VFIO_DEVICE_STATE_STOP_COPY
    RESUMING = v.VFIO_DEVICE_STATE_RESUMING
    RUNNING_P2P = v.VFIO_DEVICE_STATE_RUNNING_P2P
    PRE_COPY = v.VFIO_DEVICE_STATE_PRE_COPY
    PRE_COPY_P2P = v.VFIO_DEVICE_STATE_PRE_COPY_P2P


class MigrationDataFd(FdObject):
    """The fd the device streams its state through (STOP_COPY/PRE_COPY out, RESUMING in)."""

    def read_all(self, chunk: int = 1 << 20) -> bytes:
        parts: list[bytes] = []
        while True:
            try:
                part = os.read(self.fd, chunk)
            except OSError as exc:
                raise VfioError("read(migration data fd)", exc.errno or 0) from None
            if not part:
                return b"".join(parts)
            parts.append(part)

    def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except OSError as exc:
                raise VfioError("write(migration data fd)", exc.errno or 0) from None
            view = view[written:]

    def precopy_info(self) -> v.vfio_precopy_info:
        """VFIO_MIG_GET_PRECOPY_INFO (only valid in the PRE_COPY states)."""
        info = v.vfio_precopy_info(argsz=ctypes.sizeof(v.vfio_precopy_info))
        self.ioctl(v.VFIO_MIG_GET_PRECOPY_INFO, "VFIO_MIG_GET_PRECOPY_INFO", info)
        return info


class Migration:
    """The migration features of one device."""

    def __init__(self, device: Device) -> None:
        self.device = device

    def flags(self) -> int:
        """VFIO_MIGRATION_* flags; raises IoctlError(ENOTTY) if the device cannot migrate."""
        data = self.device.feature(
            v.VFIO_DEVICE_FEATURE_GET | v.VFIO_DEVICE_FEATURE_MIGRATION,
            bytes(ctypes.sizeof(v.vfio_device_feature_migration)),
        )
        return int(v.vfio_device_feature_migration.from_buffer_copy(data).flags)

    def state(self) -> MigState:
        data = self.device.feature(
            v.VFIO_DEVICE_FEATURE_GET | v.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
            bytes(ctypes.sizeof(v.vfio_device_feature_mig_state)),
        )
        return MigState(v.vfio_device_feature_mig_state.from_buffer_copy(data).device_state)

    def set_state(self, state: MigState | int) -> MigrationDataFd | None:
        """Move to `state`; the data fd comes back for the states that stream data."""
        request = v.vfio_device_feature_mig_state(device_state=int(state), data_fd=-1)
        data = self.device.feature(
            v.VFIO_DEVICE_FEATURE_SET | v.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, bytes(request)
        )
        answer = v.vfio_device_feature_mig_state.from_buffer_copy(data)
        return MigrationDataFd(answer.data_fd) if answer.data_fd >= 0 else None

    def data_size(self) -> int:
        """VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: the driver's estimate of the STOP_COPY bytes."""
        data = self.device.feature(
            v.VFIO_DEVICE_FEATURE_GET | v.VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
            bytes(ctypes.sizeof(v.vfio_device_feature_mig_data_size)),
        )
        return int(v.vfio_device_feature_mig_data_size.from_buffer_copy(data).stop_copy_length)
