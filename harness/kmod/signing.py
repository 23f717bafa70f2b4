# SPDX-License-Identifier: MIT
"""Module signing for Secure Boot guests, whose kernels load only modules signed by a key they
trust.

The signing identity: the vendor's own key and certificate (`--signing-key`, `--signing-cert`),
the vendor's certificate alone for a module they signed themselves (it is enrolled, the module
is left as it is), or a key and certificate the harness makes once per cache (RSA 2048,
self-signed, code signing). The certificate goes into shim's MokList
(harness.firmware.varstore); Debian's kernels trust MokList keys for modules (an upstream kernel
needs CONFIG_INTEGRITY_MACHINE_KEYRING and shim's MokListTrusted as well). A module is signed
with the kernel's own `sign-file` (sha256), run in the chroot the module was built in for that
kernel (its linux-kbuild has it, linked against the chroot's libcrypto).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.core.cache import cache_dir, entry_lock
from harness.core.cached_build import cached_build, prune_least_used, used
from harness.firmware import Firmware
from harness.kmod.build_env import BuildEnv
from harness.kmod.builder import CHROOT_BUILD_PARENT, chroot_environment, namespaced_chroot_argv

KEY_NAME = "signing_key.pem"
CERT_NAME = "signing_cert.der"
COMMON_NAME = "vfio-harness module signing key"
VALID_DAYS = 3650
MODULE_SIGNATURE_MAGIC = b"~Module signature appended~\n"
# Signed copies of modules: one per kernel, module build and key; the rest are stale builds.
KEEP_SIGNED_MODULES = 16


class SigningError(RuntimeError):
    """A module could not be signed, or the signing identity is not usable."""


@dataclass(frozen=True)
class SigningIdentity:
    key: Path | None  # PEM private key; None: modules come signed already (the vendor's)
    certificate: Path  # X.509, PEM or DER: enrolled in MokList


def signing_identity(key: Path | None = None, certificate: Path | None = None) -> SigningIdentity:
    """The vendor's (a key needs its certificate; a certificate alone enrolls it for modules
    signed already), else the harness's own."""
    if key is not None and certificate is None:
        raise SigningError("--signing-key needs its certificate: --signing-cert")
    if certificate is not None:
        check_identity(key, certificate)
        return SigningIdentity(key.resolve() if key else None, certificate.resolve())
    directory = cache_dir("signing")
    with entry_lock(directory / "identity"):
        return identity_in(directory)


def mok_for(firmware: Firmware, identity: SigningIdentity | None = None) -> tuple[Path, ...]:
    """What shim's MokList holds for `firmware`: the signing certificate under Secure Boot."""
    if not firmware.secure_boot:
        return ()
    return ((identity or signing_identity()).certificate,)


def _load_certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise SigningError(f"{path}: not an X.509 certificate ({exc})") from None


def check_identity(key: Path | None, certificate: Path) -> None:
    """The files are there, the certificate parses, and it is the key's: SigningError if not."""
    for path in (key, certificate):
        if path is not None and not path.is_file():
            raise SigningError(f"{path} not found")
    cert = _load_certificate(certificate)
    if key is None:
        return
    try:
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(
            f"{key}: not an unencrypted PEM private key ({exc}); sign-file runs without a "
            "passphrase here"
        ) from None
    mine = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    theirs = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if mine != theirs:
        raise SigningError(f"{certificate} is not the certificate of {key}")


def identity_in(directory: Path, common_name: str = COMMON_NAME) -> SigningIdentity:
    """The identity kept in `directory`, made there first if it is not (or not complete)."""
    identity = SigningIdentity(directory / KEY_NAME, directory / CERT_NAME)
    if not identity.certificate.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        _generate(directory, common_name)
    return identity


def _write_private(path: Path, data: bytes) -> None:
    """`data` in a new file only its owner can read, put in place by one rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


def _generate(directory: Path, common_name: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(directory / KEY_NAME, pem)
    tmp_cert = directory / f".{CERT_NAME}.{os.getpid()}.tmp"
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    tmp_cert.replace(directory / CERT_NAME)  # last: it marks the identity complete


def is_signed(module: Path) -> bool:
    return module.read_bytes().endswith(MODULE_SIGNATURE_MAGIC)


def sign_module(module: Path, identity: SigningIdentity, env: BuildEnv, out: Path) -> Path:
    """`module` signed with `identity` by `env`'s kernel's sign-file, written to `out`."""
    if identity.key is None:
        raise SigningError("no --signing-key to sign with")
    parent = env.root / CHROOT_BUILD_PARENT
    parent.mkdir(exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix="sign-", dir=parent))  # 0700
    try:
        shutil.copyfile(module, staged / "module.ko")
        shutil.copyfile(identity.certificate, staged / "cert")
        _write_private(staged / "key.pem", identity.key.read_bytes())
        inside = f"/{CHROOT_BUILD_PARENT}/{staged.name}"
        sign_file = f"{env.headers_dir}/scripts/sign-file"
        argv = [sign_file, "sha256", f"{inside}/key.pem", f"{inside}/cert",
                f"{inside}/module.ko"]  # fmt: skip
        result = subprocess.run(
            namespaced_chroot_argv(env.root, argv),
            capture_output=True,
            text=True,
            env=chroot_environment(),
            check=False,
        )
        if result.returncode != 0:
            raise SigningError(
                f"sign-file ({env.kernel_release}) failed on {module.name}: "
                f"{result.stderr.strip()[-400:]}"
            )
        shutil.copyfile(staged / "module.ko", out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    if not is_signed(out):
        raise SigningError(f"sign-file left {module.name} without a signature")
    return out


def module_for_secure_boot(
    module: Path, identity: SigningIdentity, env: Callable[[], BuildEnv]
) -> Path:
    """`module` as a Secure Boot guest loads it: signed with `identity`'s key (cached by the
    module's content and the identity; `env` gives the chroot whose sign-file signs), or as
    it is when only a certificate was given and the module is signed already."""
    if identity.key is None:
        if not is_signed(module):
            raise SigningError(
                f"{module} is not signed, and only --signing-cert was given: give "
                "--signing-key too, or sign the module yourself"
            )
        return module
    digest = hashlib.sha256(module.read_bytes())
    digest.update(identity.certificate.read_bytes())
    entry = cache_dir("signing", "modules") / digest.hexdigest()[:20]

    def build(scratch: Path) -> Path:
        sign_module(module, identity, env(), scratch / module.name)
        return entry / module.name

    def read(path: Path) -> Path | None:
        signed = path / module.name
        return signed if signed.is_file() else None

    built = cached_build(entry, build, read)
    prune_least_used(entry.parent, KEEP_SIGNED_MODULES, current=used(built.path))
    return built.value
