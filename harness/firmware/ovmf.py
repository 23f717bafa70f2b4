# SPDX-License-Identifier: MIT
"""Debian's OVMF builds: which code and variable-store template each firmware mode boots.

Secure Boot needs the SMM build (OVMF_CODE_4M.secboot.fd): without SMM the guest's OS could
write the variable store, and so its keys, directly. That build wants `-machine smm=on` and a
pflash that only SMM may write (`-global driver=cfi.pflash01,property=secure,value=on`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.firmware.errors import FirmwareError
from harness.firmware.modes import Firmware

OVMF_DIR = Path("/usr/share/OVMF")
CODE = "OVMF_CODE_4M.fd"
SECURE_CODE = "OVMF_CODE_4M.secboot.fd"
# No keys enrolled: Secure Boot is off until varstore.py enrolls them.
VARS_TEMPLATE = "OVMF_VARS_4M.fd"
INSTALL_HINT = "install Debian's ovmf: vfio-harness setup --profile firmware"


@dataclass(frozen=True)
class Ovmf:
    code: Path  # read-only pflash 0
    vars_template: Path  # copied per VM into pflash 1
    smm: bool  # the SMM build: smm=on and a secure pflash


def find_ovmf(firmware: Firmware, directory: Path = OVMF_DIR) -> Ovmf:
    if not firmware.uses_ovmf:
        raise ValueError(f"{firmware} boots without firmware")
    code = directory / (SECURE_CODE if firmware.secure_boot else CODE)
    template = directory / VARS_TEMPLATE
    for path in (code, template):
        if not path.is_file():
            raise FirmwareError(f"{path} not found: {INSTALL_HINT}")
    return Ovmf(code=code, vars_template=template, smm=firmware.secure_boot)
