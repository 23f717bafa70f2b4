# SPDX-License-Identifier: MIT
"""UEFI variable stores, prepared with virt-firmware's Python API and cached.

Secure Boot: a platform key of our own (PK, generated once per cache entry), Microsoft's KEK
and db certificates (db's "Microsoft Corporation UEFI CA 2011" signs Debian's shim), and the
certificates given for shim's MokList: shim trusts them for what it loads, and hands them to
the kernel (MokListRT), which trusts them for modules. Then SecureBootEnable. The calls are
those of `virt-fw-vars --enroll-generate NAME --add-mok GUID CERT --secure-boot`.

Plain UEFI: the template as it is (no keys, Secure Boot off).

Each VM boots on its own copy (`copy_for_vm`): the firmware writes its variables (boot
entries, for one) while it runs.
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness.core.cache import cache_dir
from harness.core.cached_build import (
    cached_build,
    file_sha256,
    input_key,
    prune_least_used,
    used,
)
from harness.core.records import RecordError, read_record, write_record
from harness.firmware.errors import FirmwareError
from harness.firmware.modes import Firmware
from harness.firmware.ovmf import Ovmf

VARS_FILE = "vars.fd"
RECORD_FILE = "record.json"
RECORD_FORMAT = 1
PLATFORM_KEY_NAME = "vfio-harness platform key"
# The owner GUID of our MokList entries (any GUID names an owner; this one is ours).
KEEP_VARSTORES = 8  # one per firmware mode and set of MOK certificates: a few vendors' keys
MOK_OWNER = str(uuid.uuid5(uuid.NAMESPACE_URL, "vfio-harness/mok"))


@dataclass(frozen=True)
class VarstoreRecord:
    firmware: str
    template_sha256: str
    mok_sha256: tuple[str, ...]
    virt_firmware: str
    format: int = RECORD_FORMAT


def virt_firmware_version() -> str:
    try:
        return metadata.version("virt-firmware")
    except metadata.PackageNotFoundError:
        raise FirmwareError(
            "virt-firmware is not installed: pip install virt-firmware (a dependency of "
            "vfio-harness; reinstall the harness)"
        ) from None


def write_varstore(template: Path, out: Path, *, secure_boot: bool, mok: Sequence[Path]) -> None:
    """`template` with Secure Boot set up as the module docstring says (or unchanged), to `out`."""
    from virt.firmware.varstore import autodetect  # type: ignore[import-untyped]

    store = autodetect.open_varstore(str(template))
    if store is None:
        raise FirmwareError(f"{template} is not a variable store virt-firmware knows")
    varlist = store.get_varlist()
    if secure_boot:
        varlist.enroll_platform_generate(PLATFORM_KEY_NAME)  # PK, and Microsoft's KEKs
        varlist.add_microsoft_keys()  # db
        for cert in mok:
            varlist.add_cert("MokList", MOK_OWNER, str(cert))
        varlist.enable_secureboot()
    elif mok:
        raise ValueError("MokList certificates only matter with Secure Boot")
    store.write_varstore(str(out), varlist)


def prepared_varstore(firmware: Firmware, ovmf: Ovmf, mok: Sequence[Path] = ()) -> Path:
    """The cached variable store for `firmware` with `mok` enrolled: a file to copy, never
    to boot on directly."""
    record = VarstoreRecord(
        firmware=str(firmware),
        template_sha256=file_sha256(ovmf.vars_template),
        mok_sha256=tuple(file_sha256(cert) for cert in mok),
        virt_firmware=virt_firmware_version(),
    )
    key = input_key(dataclasses.asdict(record))
    entry = cache_dir("firmware", "varstores") / f"{firmware}-{key}"

    def build(scratch: Path) -> Path:
        write_varstore(
            ovmf.vars_template, scratch / VARS_FILE, secure_boot=firmware.secure_boot, mok=mok
        )
        write_record(record, scratch / RECORD_FILE)
        return entry / VARS_FILE

    def read(path: Path) -> Path | None:
        try:
            read_record(VarstoreRecord, path / RECORD_FILE, fmt=RECORD_FORMAT, redo="rebuild")
        except RecordError:
            return None
        return path / VARS_FILE

    built = cached_build(entry, build, read)
    prune_least_used(entry.parent, KEEP_VARSTORES, current=used(built.path))
    return built.value


def copy_for_vm(varstore: Path, destination: Path) -> Path:
    shutil.copyfile(varstore, destination)
    return destination
