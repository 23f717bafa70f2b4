# SPDX-License-Identifier: MIT
"""--firmware in the plugin. Under Secure Boot a guest loads only signed modules: the module
under test (ours, or --vendor-module/--vendor-src) is signed for each kernel with the signing
identity (--signing-key/--signing-cert, else the harness's own), whose certificate the VMs'
variable store enrolls in shim's MokList."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from harness.core.cache import cache_dir
from harness.firmware import Firmware
from harness.images.build import BuiltImage
from harness.kmod.signing import SigningError, SigningIdentity, sign_module, signing_identity


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
    identity = identity_of(config)
    return () if identity is None else (identity.certificate,)


def signed_module(module: Path, image: BuiltImage, identity: SigningIdentity) -> Path:
    """`module` signed for `image`'s kernel, kept in the cache by its content and identity."""
    from harness.kmod.build_env import build_env_for

    digest = hashlib.sha256(module.read_bytes())
    digest.update(identity.certificate.read_bytes())
    out = cache_dir("signing", "modules") / f"{digest.hexdigest()[:16]}-{module.name}"
    if not out.is_file():
        scratch = out.with_name(f".{out.name}.tmp")
        sign_module(module, identity, build_env_for(image), scratch)
        scratch.replace(out)
    return out
