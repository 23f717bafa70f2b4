# SPDX-License-Identifier: MIT
"""ctypes mirror of `linux/vfio.h`: what an mdev device or a type1 container can reach.

Conventions, relied on by `harness.uapi.layout_check` and by the wrappers:

- Every public module-level int whose name starts with an uppercase letter is a C macro or enum
  constant of exactly that name (`VFIO_TYPE1v2_IOMMU` keeps its lowercase `v`). Helpers that are
  not C names are private (`_name`) or not ints.
- Items added after 6.1 carry the release that added them: constants in `SINCE`, structs in their
  `Layout`. Constants the kernel removed are in `UNTIL`; a constant whose value changed keeps its
  older values in `OLD_VALUES`. `ENUM_CONSTANTS` names the enumerators (the checker cannot probe
  their absence with `#ifdef`); `IOCTLS` names the ioctl requests.
- When a struct grew, the newest layout has the C name and older ones a version suffix.
- `__aligned_u64` is bound as c_uint64: the harness runs on 64-bit hosts (x86_64, arm64), where
  a u64 is 8-byte aligned anyway, so the two only differ on i386.

sPAPR TCE and EEH ioctls/structs, the s390 zPCI capability bodies (vfio_zdev.h) and the v1
migration region (removed from the kernel in 5.18) are not bound: no mdev device reaches them.
"""

from __future__ import annotations

from ctypes import (
    Structure,
    Union,
    c_int32,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)

from harness.uapi.raw.ioctl import _IO
from harness.uapi.raw.versions import KernelVersion, Layout, kv

VFIO_API_VERSION = 0

# -- Extensions (VFIO_CHECK_EXTENSION / VFIO_SET_IOMMU arguments) ------------------------------

VFIO_TYPE1_IOMMU = 1
VFIO_SPAPR_TCE_IOMMU = 2
VFIO_TYPE1v2_IOMMU = 3
VFIO_DMA_CC_IOMMU = 4
VFIO_EEH = 5
VFIO_TYPE1_NESTING_IOMMU = 6  # renamed __VFIO_RESERVED_TYPE1_NESTING_IOMMU in 6.13
VFIO_SPAPR_TCE_v2_IOMMU = 7
VFIO_NOIOMMU_IOMMU = 8
VFIO_UNMAP_ALL = 9
VFIO_UPDATE_VADDR = 10

VFIO_TYPE = ord(";")
VFIO_BASE = 100


class vfio_info_cap_header(Structure):
    _fields_ = (
        ("id", c_uint16),
        ("version", c_uint16),
        ("next", c_uint32),
    )


# -- Container and group ---------------------------------------------------------------------

VFIO_GET_API_VERSION = _IO(VFIO_TYPE, VFIO_BASE + 0)
VFIO_CHECK_EXTENSION = _IO(VFIO_TYPE, VFIO_BASE + 1)
VFIO_SET_IOMMU = _IO(VFIO_TYPE, VFIO_BASE + 2)


class vfio_group_status(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
    )


VFIO_GROUP_FLAGS_VIABLE = 1 << 0
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1

VFIO_GROUP_GET_STATUS = _IO(VFIO_TYPE, VFIO_BASE + 3)
VFIO_GROUP_SET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 4)
VFIO_GROUP_UNSET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 5)
VFIO_GROUP_GET_DEVICE_FD = _IO(VFIO_TYPE, VFIO_BASE + 6)

# -- Device info -----------------------------------------------------------------------------


class vfio_device_info(Structure):
    """6.7 added `pad` so the capability chain after it starts 8-byte aligned."""

    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("num_regions", c_uint32),
        ("num_irqs", c_uint32),
        ("cap_offset", c_uint32),
        ("pad", c_uint32),
    )


class vfio_device_info_v6_1(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("num_regions", c_uint32),
        ("num_irqs", c_uint32),
        ("cap_offset", c_uint32),
    )


VFIO_DEVICE_FLAGS_RESET = 1 << 0
VFIO_DEVICE_FLAGS_PCI = 1 << 1
VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2
VFIO_DEVICE_FLAGS_AMBA = 1 << 3
VFIO_DEVICE_FLAGS_CCW = 1 << 4
VFIO_DEVICE_FLAGS_AP = 1 << 5
VFIO_DEVICE_FLAGS_FSL_MC = 1 << 6
VFIO_DEVICE_FLAGS_CAPS = 1 << 7
VFIO_DEVICE_FLAGS_CDX = 1 << 8

VFIO_DEVICE_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 7)

# The mdev type's sysfs `device_api` attribute holds one of these.
VFIO_DEVICE_API_PCI_STRING = "vfio-pci"
VFIO_DEVICE_API_PLATFORM_STRING = "vfio-platform"
VFIO_DEVICE_API_AMBA_STRING = "vfio-amba"
VFIO_DEVICE_API_CCW_STRING = "vfio-ccw"
VFIO_DEVICE_API_AP_STRING = "vfio-ap"

# Device info capability ids (the zPCI bodies live in vfio_zdev.h).
VFIO_DEVICE_INFO_CAP_ZPCI_BASE = 1
VFIO_DEVICE_INFO_CAP_ZPCI_GROUP = 2
VFIO_DEVICE_INFO_CAP_ZPCI_UTIL = 3
VFIO_DEVICE_INFO_CAP_ZPCI_PFIP = 4
VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP = 5


class vfio_device_info_cap_pci_atomic_comp(Structure):
    _fields_ = (
        ("header", vfio_info_cap_header),
        ("flags", c_uint32),
        ("reserved", c_uint32),
    )


VFIO_PCI_ATOMIC_COMP32 = 1 << 0
VFIO_PCI_ATOMIC_COMP64 = 1 << 1
VFIO_PCI_ATOMIC_COMP128 = 1 << 2

# -- Regions ---------------------------------------------------------------------------------


class vfio_region_info(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("index", c_uint32),
        ("cap_offset", c_uint32),
        ("size", c_uint64),
        ("offset", c_uint64),
    )


VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
VFIO_REGION_INFO_FLAG_CAPS = 1 << 3

VFIO_DEVICE_GET_REGION_INFO = _IO(VFIO_TYPE, VFIO_BASE + 8)

VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1
VFIO_REGION_INFO_CAP_TYPE = 2
VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3
VFIO_REGION_INFO_CAP_NVLINK2_SSATGT = 4  # deprecated, no longer provided
VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD = 5  # deprecated, no longer provided


class vfio_region_sparse_mmap_area(Structure):
    _fields_ = (
        ("offset", c_uint64),
        ("size", c_uint64),
    )


class vfio_region_info_cap_sparse_mmap(Structure):
    _fields_ = (
        ("header", vfio_info_cap_header),
        ("nr_areas", c_uint32),
        ("reserved", c_uint32),
        ("areas", vfio_region_sparse_mmap_area * 0),
    )


class vfio_region_info_cap_type(Structure):
    _fields_ = (
        ("header", vfio_info_cap_header),
        ("type", c_uint32),
        ("subtype", c_uint32),
    )


# The C header writes (1 << 31), an int that C sees as negative; the __u32 `type` field it is
# compared with holds 0x80000000, which is the useful value in Python.
VFIO_REGION_TYPE_PCI_VENDOR_TYPE = 0x80000000
VFIO_REGION_TYPE_PCI_VENDOR_MASK = 0xFFFF
VFIO_REGION_TYPE_GFX = 1
VFIO_REGION_TYPE_CCW = 2
VFIO_REGION_TYPE_MIGRATION_DEPRECATED = 3

VFIO_REGION_SUBTYPE_INTEL_IGD_OPREGION = 1
VFIO_REGION_SUBTYPE_INTEL_IGD_HOST_CFG = 2
VFIO_REGION_SUBTYPE_INTEL_IGD_LPC_CFG = 3
VFIO_REGION_SUBTYPE_NVIDIA_NVLINK2_RAM = 1  # deprecated
VFIO_REGION_SUBTYPE_IBM_NVLINK2_ATSD = 1  # deprecated
VFIO_REGION_SUBTYPE_GFX_EDID = 1
VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD = 1
VFIO_REGION_SUBTYPE_CCW_SCHIB = 2
VFIO_REGION_SUBTYPE_CCW_CRW = 3
VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED = 1


class vfio_region_gfx_edid(Structure):
    """Layout of the VFIO_REGION_SUBTYPE_GFX_EDID region (mbochs, kvmgt)."""

    _fields_ = (
        ("edid_offset", c_uint32),
        ("edid_max_size", c_uint32),
        ("edid_size", c_uint32),
        ("max_xres", c_uint32),
        ("max_yres", c_uint32),
        ("link_state", c_uint32),
    )


VFIO_DEVICE_GFX_LINK_STATE_UP = 1
VFIO_DEVICE_GFX_LINK_STATE_DOWN = 2

# -- IRQs ------------------------------------------------------------------------------------


class vfio_irq_info(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("index", c_uint32),
        ("count", c_uint32),
    )


VFIO_IRQ_INFO_EVENTFD = 1 << 0
VFIO_IRQ_INFO_MASKABLE = 1 << 1
VFIO_IRQ_INFO_AUTOMASKED = 1 << 2
VFIO_IRQ_INFO_NORESIZE = 1 << 3

VFIO_DEVICE_GET_IRQ_INFO = _IO(VFIO_TYPE, VFIO_BASE + 9)


class vfio_irq_set(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("index", c_uint32),
        ("start", c_uint32),
        ("count", c_uint32),
        ("data", c_uint8 * 0),
    )


VFIO_IRQ_SET_DATA_NONE = 1 << 0
VFIO_IRQ_SET_DATA_BOOL = 1 << 1
VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2
VFIO_IRQ_SET_ACTION_MASK = 1 << 3
VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4
VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5
VFIO_IRQ_SET_DATA_TYPE_MASK = (
    VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD
)
VFIO_IRQ_SET_ACTION_TYPE_MASK = (
    VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER
)

VFIO_DEVICE_SET_IRQS = _IO(VFIO_TYPE, VFIO_BASE + 10)
VFIO_DEVICE_RESET = _IO(VFIO_TYPE, VFIO_BASE + 11)

# vfio-pci fixed region and IRQ indexes (enums in C).
VFIO_PCI_BAR0_REGION_INDEX = 0
VFIO_PCI_BAR1_REGION_INDEX = 1
VFIO_PCI_BAR2_REGION_INDEX = 2
VFIO_PCI_BAR3_REGION_INDEX = 3
VFIO_PCI_BAR4_REGION_INDEX = 4
VFIO_PCI_BAR5_REGION_INDEX = 5
VFIO_PCI_ROM_REGION_INDEX = 6
VFIO_PCI_CONFIG_REGION_INDEX = 7
VFIO_PCI_VGA_REGION_INDEX = 8
VFIO_PCI_NUM_REGIONS = 9

VFIO_PCI_INTX_IRQ_INDEX = 0
VFIO_PCI_MSI_IRQ_INDEX = 1
VFIO_PCI_MSIX_IRQ_INDEX = 2
VFIO_PCI_ERR_IRQ_INDEX = 3
VFIO_PCI_REQ_IRQ_INDEX = 4
VFIO_PCI_NUM_IRQS = 5

# vfio-ccw and vfio-ap are mdev drivers too (enums in C).
VFIO_CCW_CONFIG_REGION_INDEX = 0
VFIO_CCW_NUM_REGIONS = 1

VFIO_CCW_IO_IRQ_INDEX = 0
VFIO_CCW_CRW_IRQ_INDEX = 1
VFIO_CCW_REQ_IRQ_INDEX = 2
VFIO_CCW_NUM_IRQS = 3

VFIO_AP_REQ_IRQ_INDEX = 0
VFIO_AP_CFG_CHG_IRQ_INDEX = 1
VFIO_AP_NUM_IRQS = 2  # 1 before VFIO_AP_CFG_CHG_IRQ_INDEX: see OLD_VALUES

# -- PCI hot reset ---------------------------------------------------------------------------


class _dependent_device_id(Union):
    """group_id for group-opened devices, devid for cdev-opened ones (6.5)."""

    _fields_ = (
        ("group_id", c_uint32),
        ("devid", c_uint32),
    )


class vfio_pci_dependent_device(Structure):
    _anonymous_ = ("_id",)
    _fields_ = (
        ("_id", _dependent_device_id),
        ("segment", c_uint16),
        ("bus", c_uint8),
        ("devfn", c_uint8),
    )


class vfio_pci_dependent_device_v6_1(Structure):
    _fields_ = (
        ("group_id", c_uint32),
        ("segment", c_uint16),
        ("bus", c_uint8),
        ("devfn", c_uint8),
    )


VFIO_PCI_DEVID_OWNED = 0
VFIO_PCI_DEVID_NOT_OWNED = -1


class vfio_pci_hot_reset_info(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("count", c_uint32),
        ("devices", vfio_pci_dependent_device * 0),
    )


VFIO_PCI_HOT_RESET_FLAG_DEV_ID = 1 << 0
VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED = 1 << 1

VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12)


class vfio_pci_hot_reset(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("count", c_uint32),
        ("group_fds", c_int32 * 0),
    )


VFIO_DEVICE_PCI_HOT_RESET = _IO(VFIO_TYPE, VFIO_BASE + 13)

# -- Display (mdev vGPUs: mdpy, mbochs, kvmgt) -----------------------------------------------


class _gfx_plane_handle(Union):
    _fields_ = (
        ("region_index", c_uint32),
        ("dmabuf_id", c_uint32),
    )


class vfio_device_gfx_plane_info(Structure):
    """6.7 made the tail padding an explicit `reserved` field."""

    _anonymous_ = ("_handle",)
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("drm_plane_type", c_uint32),
        ("drm_format", c_uint32),
        ("drm_format_mod", c_uint64),
        ("width", c_uint32),
        ("height", c_uint32),
        ("stride", c_uint32),
        ("size", c_uint32),
        ("x_pos", c_uint32),
        ("y_pos", c_uint32),
        ("x_hot", c_uint32),
        ("y_hot", c_uint32),
        ("_handle", _gfx_plane_handle),
        ("reserved", c_uint32),
    )


class vfio_device_gfx_plane_info_v6_1(Structure):
    _anonymous_ = ("_handle",)
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("drm_plane_type", c_uint32),
        ("drm_format", c_uint32),
        ("drm_format_mod", c_uint64),
        ("width", c_uint32),
        ("height", c_uint32),
        ("stride", c_uint32),
        ("size", c_uint32),
        ("x_pos", c_uint32),
        ("y_pos", c_uint32),
        ("x_hot", c_uint32),
        ("y_hot", c_uint32),
        ("_handle", _gfx_plane_handle),
    )


VFIO_GFX_PLANE_TYPE_PROBE = 1 << 0
VFIO_GFX_PLANE_TYPE_DMABUF = 1 << 1
VFIO_GFX_PLANE_TYPE_REGION = 1 << 2

VFIO_DEVICE_QUERY_GFX_PLANE = _IO(VFIO_TYPE, VFIO_BASE + 14)
VFIO_DEVICE_GET_GFX_DMABUF = _IO(VFIO_TYPE, VFIO_BASE + 15)

# -- ioeventfd -------------------------------------------------------------------------------


class vfio_device_ioeventfd(Structure):
    """6.7 made the tail padding an explicit `reserved` field."""

    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("offset", c_uint64),
        ("data", c_uint64),
        ("fd", c_int32),
        ("reserved", c_uint32),
    )


class vfio_device_ioeventfd_v6_1(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("offset", c_uint64),
        ("data", c_uint64),
        ("fd", c_int32),
    )


VFIO_DEVICE_IOEVENTFD_8 = 1 << 0
VFIO_DEVICE_IOEVENTFD_16 = 1 << 1
VFIO_DEVICE_IOEVENTFD_32 = 1 << 2
VFIO_DEVICE_IOEVENTFD_64 = 1 << 3
VFIO_DEVICE_IOEVENTFD_SIZE_MASK = 0xF

VFIO_DEVICE_IOEVENTFD = _IO(VFIO_TYPE, VFIO_BASE + 16)

# -- Device features -------------------------------------------------------------------------


class vfio_device_feature(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("data", c_uint8 * 0),
    )


VFIO_DEVICE_FEATURE_MASK = 0xFFFF
VFIO_DEVICE_FEATURE_GET = 1 << 16
VFIO_DEVICE_FEATURE_SET = 1 << 17
VFIO_DEVICE_FEATURE_PROBE = 1 << 18

VFIO_DEVICE_FEATURE = _IO(VFIO_TYPE, VFIO_BASE + 17)

# -- cdev + iommufd (6.6) --------------------------------------------------------------------


class vfio_device_bind_iommufd(Structure):
    """6.17 added `token_uuid_ptr` (with VFIO_DEVICE_BIND_FLAG_TOKEN)."""

    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("iommufd", c_int32),
        ("out_devid", c_uint32),
        ("token_uuid_ptr", c_uint64),
    )


class vfio_device_bind_iommufd_v6_6(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("iommufd", c_int32),
        ("out_devid", c_uint32),
    )


VFIO_DEVICE_BIND_FLAG_TOKEN = 1 << 0

VFIO_DEVICE_BIND_IOMMUFD = _IO(VFIO_TYPE, VFIO_BASE + 18)


class vfio_device_attach_iommufd_pt(Structure):
    """6.15 added `pasid` (with VFIO_DEVICE_ATTACH_PASID)."""

    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("pt_id", c_uint32),
        ("pasid", c_uint32),
    )


class vfio_device_attach_iommufd_pt_v6_6(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("pt_id", c_uint32),
    )


VFIO_DEVICE_ATTACH_PASID = 1 << 0

VFIO_DEVICE_ATTACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 19)


class vfio_device_detach_iommufd_pt(Structure):
    """6.15 added `pasid` (with VFIO_DEVICE_DETACH_PASID)."""

    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("pasid", c_uint32),
    )


class vfio_device_detach_iommufd_pt_v6_6(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
    )


VFIO_DEVICE_DETACH_PASID = 1 << 0

VFIO_DEVICE_DETACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 20)

# -- Feature numbers and their payloads ------------------------------------------------------

VFIO_DEVICE_FEATURE_PCI_VF_TOKEN = 0


class vfio_device_feature_migration(Structure):
    _fields_ = (("flags", c_uint64),)


VFIO_MIGRATION_STOP_COPY = 1 << 0
VFIO_MIGRATION_P2P = 1 << 1
VFIO_MIGRATION_PRE_COPY = 1 << 2

VFIO_DEVICE_FEATURE_MIGRATION = 1


class vfio_device_feature_mig_state(Structure):
    _fields_ = (
        ("device_state", c_uint32),
        ("data_fd", c_int32),
    )


VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2

# enum vfio_device_mig_state
VFIO_DEVICE_STATE_ERROR = 0
VFIO_DEVICE_STATE_STOP = 1
VFIO_DEVICE_STATE_RUNNING = 2
VFIO_DEVICE_STATE_STOP_COPY = 3
VFIO_DEVICE_STATE_RESUMING = 4
VFIO_DEVICE_STATE_RUNNING_P2P = 5
VFIO_DEVICE_STATE_PRE_COPY = 6
VFIO_DEVICE_STATE_PRE_COPY_P2P = 7
VFIO_DEVICE_STATE_NR = 8


class vfio_precopy_info(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("initial_bytes", c_uint64),
        ("dirty_bytes", c_uint64),
    )


VFIO_PRECOPY_INFO_REINIT = 1 << 0  # only reported after MIG_PRECOPY_INFOv2 is set

VFIO_MIG_GET_PRECOPY_INFO = _IO(VFIO_TYPE, VFIO_BASE + 21)  # on the migration data fd

VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY = 3


class vfio_device_low_power_entry_with_wakeup(Structure):
    _fields_ = (
        ("wakeup_eventfd", c_int32),
        ("reserved", c_uint32),
    )


VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP = 4
VFIO_DEVICE_FEATURE_LOW_POWER_EXIT = 5


class vfio_device_feature_dma_logging_control(Structure):
    _fields_ = (
        ("page_size", c_uint64),
        ("num_ranges", c_uint32),
        ("__reserved", c_uint32),
        ("ranges", c_uint64),  # user pointer to vfio_device_feature_dma_logging_range[]
    )


class vfio_device_feature_dma_logging_range(Structure):
    _fields_ = (
        ("iova", c_uint64),
        ("length", c_uint64),
    )


VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6
VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7


class vfio_device_feature_dma_logging_report(Structure):
    _fields_ = (
        ("iova", c_uint64),
        ("length", c_uint64),
        ("page_size", c_uint64),
        ("bitmap", c_uint64),  # user pointer to a u64 bitmap
    )


VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8


class vfio_device_feature_mig_data_size(Structure):
    _fields_ = (("stop_copy_length", c_uint64),)


VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9


class vfio_device_feature_bus_master(Structure):
    _fields_ = (("op", c_uint32),)


VFIO_DEVICE_FEATURE_CLEAR_MASTER = 0
VFIO_DEVICE_FEATURE_SET_MASTER = 1

VFIO_DEVICE_FEATURE_BUS_MASTER = 10

VFIO_DEVICE_FEATURE_DMA_BUF = 11


class vfio_region_dma_range(Structure):
    _fields_ = (
        ("offset", c_uint64),
        ("length", c_uint64),
    )


class vfio_device_feature_dma_buf(Structure):
    _fields_ = (
        ("region_index", c_uint32),
        ("open_flags", c_uint32),
        ("flags", c_uint32),
        ("nr_ranges", c_uint32),
        ("dma_ranges", vfio_region_dma_range * 0),
    )


VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 = 12

# -- Type1 IOMMU (container) -----------------------------------------------------------------


class vfio_iommu_type1_info(Structure):
    """6.7 made the tail padding an explicit `pad` field (capability chain alignment)."""

    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("iova_pgsizes", c_uint64),
        ("cap_offset", c_uint32),
        ("pad", c_uint32),
    )


class vfio_iommu_type1_info_v6_1(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("iova_pgsizes", c_uint64),
        ("cap_offset", c_uint32),
    )


VFIO_IOMMU_INFO_PGSIZES = 1 << 0
VFIO_IOMMU_INFO_CAPS = 1 << 1

VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1


class vfio_iova_range(Structure):
    _fields_ = (
        ("start", c_uint64),
        ("end", c_uint64),
    )


class vfio_iommu_type1_info_cap_iova_range(Structure):
    _fields_ = (
        ("header", vfio_info_cap_header),
        ("nr_iovas", c_uint32),
        ("reserved", c_uint32),
        ("iova_ranges", vfio_iova_range * 0),
    )


VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2


class vfio_iommu_type1_info_cap_migration(Structure):
    _fields_ = (
        ("header", vfio_info_cap_header),
        ("flags", c_uint32),
        ("pgsize_bitmap", c_uint64),
        ("max_dirty_bitmap_size", c_uint64),
    )


VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3


class vfio_iommu_type1_info_dma_avail(Structure):
    _fields_ = (
        ("header", vfio_info_cap_header),
        ("avail", c_uint32),
    )


VFIO_IOMMU_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12)


class vfio_iommu_type1_dma_map(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("vaddr", c_uint64),
        ("iova", c_uint64),
        ("size", c_uint64),
    )


VFIO_DMA_MAP_FLAG_READ = 1 << 0
VFIO_DMA_MAP_FLAG_WRITE = 1 << 1
VFIO_DMA_MAP_FLAG_VADDR = 1 << 2

VFIO_IOMMU_MAP_DMA = _IO(VFIO_TYPE, VFIO_BASE + 13)


class vfio_bitmap(Structure):
    _fields_ = (
        ("pgsize", c_uint64),
        ("size", c_uint64),
        ("data", c_void_p),  # `__u64 *data`: any pointer fits; c_void_p takes an address
    )


class vfio_iommu_type1_dma_unmap(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("iova", c_uint64),
        ("size", c_uint64),
        ("data", c_uint8 * 0),
    )


VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0
VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1
VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2

VFIO_IOMMU_UNMAP_DMA = _IO(VFIO_TYPE, VFIO_BASE + 14)
VFIO_IOMMU_ENABLE = _IO(VFIO_TYPE, VFIO_BASE + 15)
VFIO_IOMMU_DISABLE = _IO(VFIO_TYPE, VFIO_BASE + 16)


class vfio_iommu_type1_dirty_bitmap(Structure):
    _fields_ = (
        ("argsz", c_uint32),
        ("flags", c_uint32),
        ("data", c_uint8 * 0),
    )


VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0
VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1
VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2


class vfio_iommu_type1_dirty_bitmap_get(Structure):
    _fields_ = (
        ("iova", c_uint64),
        ("size", c_uint64),
        ("bitmap", vfio_bitmap),
    )


VFIO_IOMMU_DIRTY_PAGES = _IO(VFIO_TYPE, VFIO_BASE + 17)

# -- Version bookkeeping ---------------------------------------------------------------------

IOCTLS: tuple[str, ...] = (
    "VFIO_GET_API_VERSION",
    "VFIO_CHECK_EXTENSION",
    "VFIO_SET_IOMMU",
    "VFIO_GROUP_GET_STATUS",
    "VFIO_GROUP_SET_CONTAINER",
    "VFIO_GROUP_UNSET_CONTAINER",
    "VFIO_GROUP_GET_DEVICE_FD",
    "VFIO_DEVICE_GET_INFO",
    "VFIO_DEVICE_GET_REGION_INFO",
    "VFIO_DEVICE_GET_IRQ_INFO",
    "VFIO_DEVICE_SET_IRQS",
    "VFIO_DEVICE_RESET",
    "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
    "VFIO_DEVICE_PCI_HOT_RESET",
    "VFIO_DEVICE_QUERY_GFX_PLANE",
    "VFIO_DEVICE_GET_GFX_DMABUF",
    "VFIO_DEVICE_IOEVENTFD",
    "VFIO_DEVICE_FEATURE",
    "VFIO_DEVICE_BIND_IOMMUFD",
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    "VFIO_DEVICE_DETACH_IOMMUFD_PT",
    "VFIO_MIG_GET_PRECOPY_INFO",
    "VFIO_IOMMU_GET_INFO",
    "VFIO_IOMMU_MAP_DMA",
    "VFIO_IOMMU_UNMAP_DMA",
    "VFIO_IOMMU_ENABLE",
    "VFIO_IOMMU_DISABLE",
    "VFIO_IOMMU_DIRTY_PAGES",
)

ENUM_CONSTANTS: frozenset[str] = frozenset(
    {
        "VFIO_PCI_BAR0_REGION_INDEX",
        "VFIO_PCI_BAR1_REGION_INDEX",
        "VFIO_PCI_BAR2_REGION_INDEX",
        "VFIO_PCI_BAR3_REGION_INDEX",
        "VFIO_PCI_BAR4_REGION_INDEX",
        "VFIO_PCI_BAR5_REGION_INDEX",
        "VFIO_PCI_ROM_REGION_INDEX",
        "VFIO_PCI_CONFIG_REGION_INDEX",
        "VFIO_PCI_VGA_REGION_INDEX",
        "VFIO_PCI_NUM_REGIONS",
        "VFIO_PCI_INTX_IRQ_INDEX",
        "VFIO_PCI_MSI_IRQ_INDEX",
        "VFIO_PCI_MSIX_IRQ_INDEX",
        "VFIO_PCI_ERR_IRQ_INDEX",
        "VFIO_PCI_REQ_IRQ_INDEX",
        "VFIO_PCI_NUM_IRQS",
        "VFIO_CCW_CONFIG_REGION_INDEX",
        "VFIO_CCW_NUM_REGIONS",
        "VFIO_CCW_IO_IRQ_INDEX",
        "VFIO_CCW_CRW_IRQ_INDEX",
        "VFIO_CCW_REQ_IRQ_INDEX",
        "VFIO_CCW_NUM_IRQS",
        "VFIO_AP_REQ_IRQ_INDEX",
        "VFIO_AP_CFG_CHG_IRQ_INDEX",
        "VFIO_AP_NUM_IRQS",
        "VFIO_DEVICE_STATE_ERROR",
        "VFIO_DEVICE_STATE_STOP",
        "VFIO_DEVICE_STATE_RUNNING",
        "VFIO_DEVICE_STATE_STOP_COPY",
        "VFIO_DEVICE_STATE_RESUMING",
        "VFIO_DEVICE_STATE_RUNNING_P2P",
        "VFIO_DEVICE_STATE_PRE_COPY",
        "VFIO_DEVICE_STATE_PRE_COPY_P2P",
        "VFIO_DEVICE_STATE_NR",
    }
)

# Upstream release that added each constant absent from 6.1.
SINCE: dict[str, KernelVersion] = {
    # 6.2: migration PRE_COPY and the stop-copy size estimate
    "VFIO_MIGRATION_PRE_COPY": kv("6.2"),
    "VFIO_DEVICE_STATE_PRE_COPY": kv("6.2"),
    "VFIO_DEVICE_STATE_PRE_COPY_P2P": kv("6.2"),
    "VFIO_DEVICE_STATE_NR": kv("6.2"),
    "VFIO_MIG_GET_PRECOPY_INFO": kv("6.2"),
    "VFIO_DEVICE_FEATURE_MIG_DATA_SIZE": kv("6.2"),
    # 6.5: vfio-cdx, PCIe AtomicOp completer cap, hot reset for cdev-opened devices
    "VFIO_DEVICE_FLAGS_CDX": kv("6.5"),
    "VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP": kv("6.5"),
    "VFIO_PCI_ATOMIC_COMP32": kv("6.5"),
    "VFIO_PCI_ATOMIC_COMP64": kv("6.5"),
    "VFIO_PCI_ATOMIC_COMP128": kv("6.5"),
    "VFIO_PCI_DEVID_OWNED": kv("6.5"),
    "VFIO_PCI_DEVID_NOT_OWNED": kv("6.5"),
    "VFIO_PCI_HOT_RESET_FLAG_DEV_ID": kv("6.5"),
    "VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED": kv("6.5"),
    # 6.6: the vfio device cdev, bound to an iommufd
    "VFIO_DEVICE_BIND_IOMMUFD": kv("6.6"),
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT": kv("6.6"),
    "VFIO_DEVICE_DETACH_IOMMUFD_PT": kv("6.6"),
    # 6.8: vfio-ap request IRQ, CDX bus master feature
    "VFIO_AP_REQ_IRQ_INDEX": kv("6.8"),
    "VFIO_AP_NUM_IRQS": kv("6.8"),
    "VFIO_DEVICE_FEATURE_BUS_MASTER": kv("6.8"),
    "VFIO_DEVICE_FEATURE_CLEAR_MASTER": kv("6.8"),
    "VFIO_DEVICE_FEATURE_SET_MASTER": kv("6.8"),
    # 6.15: PASID attach/detach
    "VFIO_DEVICE_ATTACH_PASID": kv("6.15"),
    "VFIO_DEVICE_DETACH_PASID": kv("6.15"),
    # 6.16: vfio-ap configuration-change IRQ
    "VFIO_AP_CFG_CHG_IRQ_INDEX": kv("6.16"),
    # 6.17: VF token through BIND_IOMMUFD
    "VFIO_DEVICE_BIND_FLAG_TOKEN": kv("6.17"),
    # 6.19: dma-buf export of regions
    "VFIO_DEVICE_FEATURE_DMA_BUF": kv("6.19"),
    # 7.1: precopy info v2 (REINIT)
    "VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2": kv("7.1"),
    "VFIO_PRECOPY_INFO_REINIT": kv("7.1"),
}

# First release without the constant.
UNTIL: dict[str, KernelVersion] = {
    "VFIO_TYPE1_NESTING_IOMMU": kv("6.13"),
}

# Constants whose value changed: (first release with the current value, older value), newest
# change first.
OLD_VALUES: dict[str, tuple[tuple[KernelVersion, int], ...]] = {
    "VFIO_AP_NUM_IRQS": ((kv("6.16"), 1),),
}

_v6_2 = kv("6.2")
_v6_5 = kv("6.5")
_v6_6 = kv("6.6")
_v6_7 = kv("6.7")
_v6_15 = kv("6.15")
_v6_17 = kv("6.17")

STRUCT_LAYOUTS: list[Layout] = [
    Layout("vfio_info_cap_header", vfio_info_cap_header),
    Layout("vfio_group_status", vfio_group_status),
    Layout("vfio_device_info", vfio_device_info_v6_1, until=_v6_7),
    Layout("vfio_device_info", vfio_device_info, since=_v6_7),
    Layout(
        "vfio_device_info_cap_pci_atomic_comp", vfio_device_info_cap_pci_atomic_comp, since=_v6_5
    ),
    Layout("vfio_region_info", vfio_region_info),
    Layout("vfio_region_sparse_mmap_area", vfio_region_sparse_mmap_area),
    Layout("vfio_region_info_cap_sparse_mmap", vfio_region_info_cap_sparse_mmap),
    Layout("vfio_region_info_cap_type", vfio_region_info_cap_type),
    Layout("vfio_region_gfx_edid", vfio_region_gfx_edid),
    Layout("vfio_irq_info", vfio_irq_info),
    Layout("vfio_irq_set", vfio_irq_set),
    Layout("vfio_pci_dependent_device", vfio_pci_dependent_device_v6_1, until=_v6_5),
    Layout("vfio_pci_dependent_device", vfio_pci_dependent_device, since=_v6_5),
    Layout("vfio_pci_hot_reset_info", vfio_pci_hot_reset_info),
    Layout("vfio_pci_hot_reset", vfio_pci_hot_reset),
    Layout("vfio_device_gfx_plane_info", vfio_device_gfx_plane_info_v6_1, until=_v6_7),
    Layout("vfio_device_gfx_plane_info", vfio_device_gfx_plane_info, since=_v6_7),
    Layout("vfio_device_ioeventfd", vfio_device_ioeventfd_v6_1, until=_v6_7),
    Layout("vfio_device_ioeventfd", vfio_device_ioeventfd, since=_v6_7),
    Layout("vfio_device_feature", vfio_device_feature),
    Layout("vfio_device_bind_iommufd", vfio_device_bind_iommufd_v6_6, _v6_6, _v6_17),
    Layout("vfio_device_bind_iommufd", vfio_device_bind_iommufd, since=_v6_17),
    Layout("vfio_device_attach_iommufd_pt", vfio_device_attach_iommufd_pt_v6_6, _v6_6, _v6_15),
    Layout("vfio_device_attach_iommufd_pt", vfio_device_attach_iommufd_pt, since=_v6_15),
    Layout("vfio_device_detach_iommufd_pt", vfio_device_detach_iommufd_pt_v6_6, _v6_6, _v6_15),
    Layout("vfio_device_detach_iommufd_pt", vfio_device_detach_iommufd_pt, since=_v6_15),
    Layout("vfio_device_feature_migration", vfio_device_feature_migration),
    Layout("vfio_device_feature_mig_state", vfio_device_feature_mig_state),
    Layout("vfio_precopy_info", vfio_precopy_info, since=_v6_2),
    Layout("vfio_device_low_power_entry_with_wakeup", vfio_device_low_power_entry_with_wakeup),
    Layout("vfio_device_feature_dma_logging_control", vfio_device_feature_dma_logging_control),
    Layout("vfio_device_feature_dma_logging_range", vfio_device_feature_dma_logging_range),
    Layout("vfio_device_feature_dma_logging_report", vfio_device_feature_dma_logging_report),
    Layout("vfio_device_feature_mig_data_size", vfio_device_feature_mig_data_size, since=_v6_2),
    Layout("vfio_device_feature_bus_master", vfio_device_feature_bus_master, since=kv("6.8")),
    Layout("vfio_region_dma_range", vfio_region_dma_range, since=kv("6.19")),
    Layout("vfio_device_feature_dma_buf", vfio_device_feature_dma_buf, since=kv("6.19")),
    Layout("vfio_iommu_type1_info", vfio_iommu_type1_info_v6_1, until=_v6_7),
    Layout("vfio_iommu_type1_info", vfio_iommu_type1_info, since=_v6_7),
    Layout("vfio_iova_range", vfio_iova_range),
    Layout("vfio_iommu_type1_info_cap_iova_range", vfio_iommu_type1_info_cap_iova_range),
    Layout("vfio_iommu_type1_info_cap_migration", vfio_iommu_type1_info_cap_migration),
    Layout("vfio_iommu_type1_info_dma_avail", vfio_iommu_type1_info_dma_avail),
    Layout("vfio_iommu_type1_dma_map", vfio_iommu_type1_dma_map),
    Layout("vfio_bitmap", vfio_bitmap),
    Layout("vfio_iommu_type1_dma_unmap", vfio_iommu_type1_dma_unmap),
    Layout("vfio_iommu_type1_dirty_bitmap", vfio_iommu_type1_dirty_bitmap),
    Layout("vfio_iommu_type1_dirty_bitmap_get", vfio_iommu_type1_dirty_bitmap_get),
]
