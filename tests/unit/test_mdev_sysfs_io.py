# SPDX-License-Identifier: MIT
"""RealSysfsIO: the bytes and syscalls that reach the kernel, checked against plain tmp files."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from harness.mdev import MdevError, MdevNotFoundError, MdevSysfs, RealSysfsIO
from harness.mdev.fake import FakeMdevTree

UUID_A = "3f7a9c1e-5b2d-4e8f-9a6c-0d1e2f3a4b5c"


@pytest.fixture
def write_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every os.write() made, by payload: kernfs gives each one to store() separately."""
    calls: list[bytes] = []
    real_write = os.write

    def recording_write(fd: int, data: bytes) -> int:
        calls.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", recording_write)
    return calls


def test_write_sends_the_text_in_one_write_without_a_newline(
    tmp_path: Path, write_calls: list[bytes]
) -> None:
    attribute = tmp_path / "create"
    attribute.touch()
    RealSysfsIO().write_text(attribute, UUID_A)
    assert write_calls == [UUID_A.encode()]
    assert attribute.read_bytes() == UUID_A.encode()


def test_write_never_creates_a_missing_attribute(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        RealSysfsIO().write_text(tmp_path / "create", UUID_A)
    assert not (tmp_path / "create").exists()


def test_short_write_is_eio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attribute = tmp_path / "create"
    attribute.touch()
    monkeypatch.setattr(os, "write", lambda fd, data: len(data) - 1)
    with pytest.raises(OSError) as info:
        RealSysfsIO().write_text(attribute, UUID_A)
    assert info.value.errno == errno.EIO


def test_read_returns_the_whole_content_with_its_newline(tmp_path: Path) -> None:
    attribute = tmp_path / "description"
    text = "line\n" * 2000  # more than one 4 KiB chunk
    attribute.write_text(text)
    assert RealSysfsIO().read_text(attribute) == text


def test_model_over_real_io_reads_a_tree_and_writes_exact_bytes(tmp_path: Path) -> None:
    """A plain directory cannot react, so create finds no device: but the bytes are on disk."""
    tree = FakeMdevTree(tmp_path)
    real = MdevSysfs(tmp_path, RealSysfsIO())
    mtype = real.find_type("mtty-1")
    assert (mtype.name, mtype.device_api, mtype.available_instances) == ("1", "vfio-pci", 4)

    with pytest.raises(MdevNotFoundError):
        mtype.create(UUID_A)
    assert (mtype.path / "create").read_bytes() == UUID_A.encode()

    device = tree.sysfs().find_type("mtty-1").create(UUID_A)
    real.device(device.uuid).remove()
    assert (device.real_path / "remove").read_bytes() == b"1"


def test_model_names_the_operation_when_real_io_fails(tmp_path: Path) -> None:
    FakeMdevTree(tmp_path)
    real = MdevSysfs(tmp_path, RealSysfsIO())
    mtype = real.find_type("mtty-1")
    (mtype.path / "available_instances").unlink()
    (mtype.path / "available_instances").mkdir()
    with pytest.raises(MdevError) as info:
        _ = mtype.available_instances
    assert info.value.errno == errno.EISDIR
    attribute = mtype.path / "available_instances"
    prefix = f"read available_instances of mdev type mtty-1: {attribute}: EISDIR"
    assert str(info.value).startswith(prefix)


def test_malformed_available_instances_is_reported(tmp_path: Path) -> None:
    FakeMdevTree(tmp_path)
    mtype = MdevSysfs(tmp_path, RealSysfsIO()).find_type("mtty-1")
    (mtype.path / "available_instances").write_text("many\n")
    with pytest.raises(MdevError) as info:
        _ = mtype.available_instances
    assert info.value.errno == errno.EBADMSG
    assert "'many\\n'" in str(info.value)
