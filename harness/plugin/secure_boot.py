# SPDX-License-Identifier: MIT
"""--firmware in the plugin. Under Secure Boot a guest loads only signed modules: the module
under test (ours, or --vendor-module/--vendor-src) is signed for each kernel with the signing
identity (--signing-key/--signing-cert, else the harness's own), whose certificate the VMs'
variable store enrolls in shim's MokList."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.firmware import Firmware
from harness.images.build import BuiltImage
from harness.kmod.signing import (
    SigningError,
    SigningIdentity,
    module_for_secure_boot,
    mok_for,
    signing_identity,
)


def firmware_of(config: pytest.Config) -> Firmware:
    return Firmware(config.getoption("--firmware"))


def identity_of(config: pytest.Config) -> SigningIdentity | None:
    """The identity modules are signed with, under Secure Boot; None otherwise."""
    if not firmware_of(config).secure_boot:
        return None
    key, cert = config.getoption("--signing-key"), config.getoption("--signing-cert")
    try:
        return signing_identity(
            Path(key).expanduser() if key else None, Path(cert).expanduser() if cert else None
        )
    except SigningError as exc:
        raise pytest.UsageError(str(exc)) from None


def mok_of(config: pytest.Config) -> tuple[Path, ...]:
    return mok_for(firmware_of(config), identity_of(config))


def signed_module(module: Path, image: BuiltImage, identity: SigningIdentity) -> Path:
    """`module` as `image`'s kernel under Secure Boot loads it."""
    from harness.kmod.build_env import build_env_for

    return module_for_secure_boot(module, identity, lambda: build_env_for(image))
