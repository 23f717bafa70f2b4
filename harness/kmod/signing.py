# SPDX-License-Identifier: MIT
"""Module signing for Secure Boot guests, whose kernels load only modules signed by a key they
trust.

The signing identity: the vendor's own key and certificate (`--signing-key`, `--signing-cert`),
or one the harness makes once per cache (RSA 2048, self-signed, code signing). Its certificate
goes into shim's MokList (harness.firmware.varstore), from which the kernel trusts it. A module
is signed with the kernel's own `sign-file` (sha256), run in the chroot the module was built in
for that kernel (its linux-kbuild has it, linked against the chroot's libcrypto).
"""

from __future__ import annotations

import datetime
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.core.cache import cache_dir, entry_lock
from harness.kmod.build_env import BuildEnv
from harness.kmod.builder import CHROOT_BUILD_PARENT, chroot_environment, namespaced_chroot_argv

KEY_NAME = "signing_key.pem"
CERT_NAME = "signing_cert.der"
COMMON_NAME = "vfio-harness module signing key"
VALID_DAYS = 3650
MODULE_SIGNATURE_MAGIC = b"~Module signature appended~\n"


class SigningError(RuntimeError):
    """A module could not be signed, or the signing identity is not usable."""


@dataclass(frozen=True)
class SigningIdentity:
    key: Path  # PEM private key
    certificate: Path  # DER X.509 certificate


def signing_identity(key: Path | None = None, certificate: Path | None = None) -> SigningIdentity:
    """The vendor's key and certificate if given (both), else the harness's own."""
    if (key is None) != (certificate is None):
        raise SigningError("give both --signing-key and --signing-cert, or neither")
    if key is not None and certificate is not None:
        for path in (key, certificate):
            if not path.is_file():
                raise SigningError(f"{path} not found")
        return SigningIdentity(key.resolve(), _der_certificate(certificate.resolve()))
    directory = cache_dir("signing")
    with entry_lock(directory / "identity"):
        return new_identity(directory)


def _der_certificate(path: Path) -> Path:
    """`path` if it holds a DER certificate; a PEM one is converted beside the cache's."""
    data = path.read_bytes()
    if not data.lstrip().startswith(b"-----BEGIN"):
        return path
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise SigningError(f"{path}: not an X.509 certificate ({exc})") from None
    der = cache_dir("signing", "vendor") / f"{path.stem}.der"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return der


def new_identity(directory: Path, common_name: str = COMMON_NAME) -> SigningIdentity:
    """The identity in `directory`, made there first if it is not (or not complete)."""
    identity = SigningIdentity(directory / KEY_NAME, directory / CERT_NAME)
    if not identity.certificate.is_file():
        _generate(identity, common_name)
    return identity


def _generate(identity: SigningIdentity, common_name: str) -> None:
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
    tmp_key = identity.key.with_suffix(".tmp")
    tmp_key.write_bytes(pem)
    tmp_key.chmod(0o600)
    tmp_key.replace(identity.key)
    tmp_cert = identity.certificate.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    tmp_cert.replace(identity.certificate)  # last: it marks the identity complete


def is_signed(module: Path) -> bool:
    return module.read_bytes().endswith(MODULE_SIGNATURE_MAGIC)


def sign_module(module: Path, identity: SigningIdentity, env: BuildEnv, out: Path) -> Path:
    """`module` signed with `identity` by `env`'s kernel's sign-file, written to `out`."""
    parent = env.root / CHROOT_BUILD_PARENT
    parent.mkdir(exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix="sign-", dir=parent))
    try:
        for source, name in ((module, "module.ko"), (identity.key, "key.pem"),
                             (identity.certificate, "cert.der")):  # fmt: skip
            shutil.copyfile(source, staged / name)
        inside = f"/{CHROOT_BUILD_PARENT}/{staged.name}"
        sign_file = f"{env.headers_dir}/scripts/sign-file"
        argv = [sign_file, "sha256", f"{inside}/key.pem", f"{inside}/cert.der",
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
