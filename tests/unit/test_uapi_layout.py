# SPDX-License-Identifier: MIT
"""The ctypes UAPI mirrors against real kernel headers (6.1, 6.12, 7.2), and the checker itself."""

from __future__ import annotations

import ctypes
import dataclasses
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import pytest

from harness.uapi import layout_check as lc
from harness.uapi.raw import iommufd, vfio
from harness.uapi.raw.versions import OLDEST_SUPPORTED, KernelVersion, Layout, kv

KERNELS = ("6.1", "6.12", "7.2")
RAW_MODULES = (vfio, iommufd)
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

# Every release the bookkeeping mentions, plus the ends of the supported range.
RELEASES = [kv(f"6.{minor}") for minor in range(1, 20)] + [kv(f"7.{m}") for m in range(3)]


@pytest.fixture(scope="session")
def header_sets(uapi_header_sets: Mapping[str, lc.HeaderSet]) -> Mapping[str, lc.HeaderSet]:
    return uapi_header_sets


# -- Without a compiler ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (vfio.VFIO_GET_API_VERSION, 0x3B64),  # _IO(';', 100 + 0)
        (vfio.VFIO_DEVICE_GET_REGION_INFO, 0x3B6C),  # 100 + 8
        (vfio.VFIO_DEVICE_FEATURE, 0x3B75),  # 100 + 17
        (vfio.VFIO_IOMMU_DIRTY_PAGES, 0x3B75),  # 100 + 17 too, on the container fd
        (vfio.VFIO_MIG_GET_PRECOPY_INFO, 0x3B79),  # 100 + 21
        (iommufd.IOMMU_DESTROY, 0x3B80),
        (iommufd.IOMMU_IOAS_ALLOC, 0x3B81),
        (iommufd.IOMMU_IOAS_MAP_FILE, 0x3B8F),
        (iommufd.IOMMU_IOAS_CHANGE_PROCESS, 0x3B92),
    ],
)
def test_ioctl_numbers_by_hand(value: int, expected: int) -> None:
    assert value == expected


def _module_id(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[1]


@pytest.mark.parametrize("module", RAW_MODULES, ids=_module_id)
def test_ioctls_are_type_semicolon_requests(module: ModuleType) -> None:
    constants = lc.module_constants(module)
    for name in module.IOCTLS:
        assert constants[name] >> 8 == ord(";"), name


@pytest.mark.parametrize("module", RAW_MODULES, ids=_module_id)
def test_every_public_struct_has_a_layout(module: ModuleType) -> None:
    structs = {
        value
        for name, value in vars(module).items()
        if not name.startswith("_")
        and isinstance(value, type)
        and issubclass(value, ctypes.Structure)
        and value.__module__ == module.__name__
    }
    registered = [layout.struct for layout in module.STRUCT_LAYOUTS]
    assert structs == set(registered)
    assert len(registered) == len(set(registered)), "a struct registered twice"


def test_bookkeeping_is_consistent() -> None:
    vfio_spec, iommufd_spec = lc.default_specs()  # validates every annotated name exists
    assert all(since > OLDEST_SUPPORTED for since in vfio_spec.since.values())
    # The header appeared in 6.2: everything in it says so, and every constant is annotated.
    assert set(iommufd_spec.since) == set(iommufd_spec.constants)
    assert all(since >= kv("6.2") for since in iommufd_spec.since.values())
    assert all(layout.since >= kv("6.2") for layout in iommufd_spec.layouts)


@pytest.mark.parametrize("version", RELEASES, ids=str)
def test_one_layout_per_struct_and_version(version: KernelVersion) -> None:
    for module in RAW_MODULES:
        valid = Counter(lo.c_name for lo in module.STRUCT_LAYOUTS if lo.valid_for(version))
        assert all(count == 1 for count in valid.values()), valid


def _pick(c_name: str, version: str) -> type | None:
    for layout in vfio.STRUCT_LAYOUTS:
        if layout.c_name == c_name and layout.valid_for(kv(version)):
            return layout.struct
    return None


@pytest.mark.parametrize(
    ("c_name", "version", "struct", "size"),
    [
        ("vfio_device_info", "6.1", vfio.vfio_device_info_v6_1, 20),
        ("vfio_device_info", "6.6", vfio.vfio_device_info_v6_1, 20),
        ("vfio_device_info", "6.7", vfio.vfio_device_info, 24),
        ("vfio_device_info", "7.2", vfio.vfio_device_info, 24),
        ("vfio_device_bind_iommufd", "6.5", None, 0),
        ("vfio_device_bind_iommufd", "6.12", vfio.vfio_device_bind_iommufd_v6_6, 16),
        ("vfio_device_bind_iommufd", "6.17", vfio.vfio_device_bind_iommufd, 24),
        ("vfio_device_attach_iommufd_pt", "6.14", vfio.vfio_device_attach_iommufd_pt_v6_6, 12),
        ("vfio_device_attach_iommufd_pt", "6.15", vfio.vfio_device_attach_iommufd_pt, 16),
        ("vfio_device_detach_iommufd_pt", "6.12", vfio.vfio_device_detach_iommufd_pt_v6_6, 8),
        ("vfio_device_detach_iommufd_pt", "7.2", vfio.vfio_device_detach_iommufd_pt, 12),
    ],
)
def test_layout_selection(c_name: str, version: str, struct: type | None, size: int) -> None:
    picked = _pick(c_name, version)
    assert picked is struct
    if struct is not None:
        assert ctypes.sizeof(struct) == size


def test_constant_lifetimes() -> None:
    spec = lc.default_specs()[0]
    assert spec.constant_exists("VFIO_TYPE1_NESTING_IOMMU", kv("6.12"))
    assert not spec.constant_exists("VFIO_TYPE1_NESTING_IOMMU", kv("6.13"))
    assert not spec.constant_exists("VFIO_DEVICE_BIND_IOMMUFD", kv("6.5"))
    assert spec.constant_exists("VFIO_DEVICE_BIND_IOMMUFD", kv("6.6"))
    assert spec.value_for("VFIO_AP_NUM_IRQS", kv("6.12")) == 1
    assert spec.value_for("VFIO_AP_NUM_IRQS", kv("7.2")) == vfio.VFIO_AP_NUM_IRQS == 2


def test_anonymous_union_members_are_checked_by_name() -> None:
    members = lc.c_members(vfio.vfio_device_gfx_plane_info)
    assert members[-3:] == ["region_index", "dmabuf_id", "reserved"]
    assert vfio.vfio_device_gfx_plane_info.dmabuf_id.offset == 56


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Newer headers: the parts win, since SUBLEVEL saturates at 255 inside the code.
        (
            "#define LINUX_VERSION_CODE 393727\n#define LINUX_VERSION_MAJOR 6\n"
            "#define LINUX_VERSION_PATCHLEVEL 1\n#define LINUX_VERSION_SUBLEVEL 300\n",
            KernelVersion(6, 1, 300),
        ),
        ("#define LINUX_VERSION_CODE 396405\n", KernelVersion(6, 12, 117)),
    ],
)
def test_version_header(tmp_path: Path, text: str, expected: KernelVersion) -> None:
    (tmp_path / "linux").mkdir()
    (tmp_path / "linux" / "version.h").write_text(text)
    assert lc.HeaderSet.from_include_dirs("x", [tmp_path]).version == expected


# -- Against real headers --------------------------------------------------------------------


@needs_gcc
@pytest.mark.parametrize("kernel", KERNELS)
def test_layouts_match_kernel_headers(header_sets: dict[str, lc.HeaderSet], kernel: str) -> None:
    header_set = header_sets[kernel]
    assert f"{header_set.version.major}.{header_set.version.minor}" == kernel
    report = lc.check(header_set)
    print(report.summary())  # the per-kernel counts, with -s or -rP

    assert report.mismatches == []
    version = header_set.version
    valid = [
        lo.struct.__name__ for m in RAW_MODULES for lo in m.STRUCT_LAYOUTS if lo.valid_for(version)
    ]
    assert report.checked_layouts == valid
    assert report.structs == len(valid) >= 30
    assert report.struct_checks >= 4 * report.structs
    specs = lc.default_specs()
    ioctls = [
        n
        for s in specs
        if version >= s.header_since
        for n in s.ioctls
        if s.constant_exists(n, version)
    ]
    assert report.ioctl_checks == len(ioctls) >= 24
    assert report.constant_checks >= 130
    assert report.absence_checks >= 1


# -- The checker catches what it should ------------------------------------------------------


class _irq_info_swapped(ctypes.Structure):
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        ("index", ctypes.c_uint32),
    )


class _group_status_short(ctypes.Structure):
    _fields_ = (("argsz", ctypes.c_uint32),)


EMPTY_VFIO_SPEC = lc.UapiSpec("linux/vfio.h", OLDEST_SUPPORTED, layouts=[], constants={})


@needs_gcc
def test_wrong_layouts_and_values_are_mismatches(header_sets: dict[str, lc.HeaderSet]) -> None:
    spec = dataclasses.replace(
        EMPTY_VFIO_SPEC,
        layouts=[
            Layout("vfio_irq_info", _irq_info_swapped),
            Layout("vfio_group_status", _group_status_short),
        ],
        constants={"VFIO_TYPE": 60, "VFIO_DEVICE_GET_INFO": vfio.VFIO_DEVICE_GET_INFO + 1},
        ioctls=frozenset({"VFIO_DEVICE_GET_INFO"}),
    )
    report = lc.check(header_sets["6.12"], [spec])
    where = f"({header_sets['6.12'].label})"
    assert sorted(report.mismatches) == sorted(
        [
            f"vfio_irq_info.count: offset 8 in Python, 12 in C {where}",
            f"vfio_irq_info.index: offset 12 in Python, 8 in C {where}",
            f"vfio_group_status: size 4 in Python, 8 in C {where}",
            f"VFIO_TYPE: value 60 in Python, 59 in C {where}",
            f"VFIO_DEVICE_GET_INFO: value {0x3B6C} in Python, {0x3B6B} in C {where}",
        ]
    )
    assert (report.structs, report.struct_checks, report.ioctl_checks) == (2, 7, 1)
    assert report.constant_checks == 1


@needs_gcc
def test_wrong_since_annotations(header_sets: dict[str, lc.HeaderSet]) -> None:
    spec = dataclasses.replace(
        EMPTY_VFIO_SPEC,
        constants={
            "VFIO_DEVICE_FLAGS_CDX": vfio.VFIO_DEVICE_FLAGS_CDX,  # right: absent in 6.1
            "VFIO_DEVICE_FLAGS_CAPS": vfio.VFIO_DEVICE_FLAGS_CAPS,  # wrong: present in 6.1
            "VFIO_TYPE": vfio.VFIO_TYPE,  # a macro claimed to be an enum constant
        },
        since={"VFIO_DEVICE_FLAGS_CDX": kv("6.5"), "VFIO_DEVICE_FLAGS_CAPS": kv("6.5")},
        enums=frozenset({"VFIO_TYPE"}),
    )
    report = lc.check(header_sets["6.1"], [spec])
    assert report.absence_checks == 2
    assert len(report.mismatches) == 2
    absent = f"VFIO_DEVICE_FLAGS_CAPS: Python says it is absent in {header_sets['6.1'].version}"
    assert absent in report.mismatches[1]
    assert report.mismatches[0].startswith("VFIO_TYPE: Python says an enum constant")


@needs_gcc
def test_missing_item_is_a_compile_error(header_sets: dict[str, lc.HeaderSet]) -> None:
    # bind_iommufd came with 6.6: a layout claiming 6.1 cannot compile against 6.1 headers.
    wrong = Layout("vfio_device_bind_iommufd", vfio.vfio_device_bind_iommufd)  # since 6.1
    spec = dataclasses.replace(EMPTY_VFIO_SPEC, layouts=[wrong])
    with pytest.raises(lc.CompileError, match="vfio_device_bind_iommufd") as error:
        lc.check(header_sets["6.1"], [spec])
    assert "error" in error.value.output
