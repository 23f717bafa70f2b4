# SPDX-License-Identifier: MIT
"""SSH keys: the client key generated for a run, and the guest host key pinned from the image.

The run key is Ed25519: OpenSSH and Debian 12's dropbear (2022.83) both accept it for public-key
authentication. It is written in OpenSSH's private-key format with mode 0600 (OpenSSH's `ssh -i`
refuses anything looser, and it is a credential), next to its `.pub` line for image injection.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paramiko.pkey import UnknownKeyType

RUN_KEY_NAME = "id_ed25519"
RUN_KEY_COMMENT = "vfio-harness-run"


@dataclass(frozen=True)
class RunKey:
    """The client key of one run: `pkey` signs, `public_line` goes into authorized_keys."""

    private_path: Path
    public_line: str
    pkey: paramiko.PKey

    @property
    def public_path(self) -> Path:
        return self.private_path.with_name(self.private_path.name + ".pub")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.pkey)


def generate_run_key(run_dir: Path, name: str = RUN_KEY_NAME) -> RunKey:
    """Create a fresh Ed25519 key in `run_dir` (mode 0600) and its `.pub` (OpenSSH format).

    Refuses to overwrite: a key already there belongs to another run or was not cleaned up.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    private_path = run_dir / name
    key = Ed25519PrivateKey.generate()
    private_text = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public_blob = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    public_line = f"{public_blob.decode('ascii')} {RUN_KEY_COMMENT}"
    try:
        # Created with its final mode (O_EXCL, 0600): never readable by others, not even briefly.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(
            f"{private_path} already exists: use load_run_key() for it, or a fresh run directory"
        ) from None
    with os.fdopen(fd, "wb") as out:
        out.write(private_text)
    private_path.with_name(name + ".pub").write_text(public_line + "\n")
    return load_run_key(private_path)


def load_run_key(private_path: Path) -> RunKey:
    """The run key stored at `private_path` (as written by generate_run_key)."""
    mode = private_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(
            f"{private_path} has mode {mode:04o}; a private key must be 0600 (chmod 600 it)"
        )
    pkey = paramiko.Ed25519Key(filename=str(private_path))
    public_line = f"{pkey.get_name()} {pkey.get_base64()} {RUN_KEY_COMMENT}"
    return RunKey(private_path, public_line, pkey)


def parse_public_key(line: str) -> paramiko.PKey:
    """A public key from an OpenSSH "type base64 [comment]" line (authorized_keys, manifest)."""
    fields = line.split()
    if len(fields) < 2:
        raise ValueError(f"not an OpenSSH public key line (want 'type base64'): {line!r}")
    key_type, encoded = fields[0], fields[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except binascii.Error as err:
        raise ValueError(f"bad base64 in {key_type} public key: {err}") from None
    try:
        key = paramiko.PKey.from_type_string(key_type, blob)
    except (paramiko.SSHException, UnknownKeyType, ValueError) as err:
        raise ValueError(f"cannot read {key_type} public key: {err}") from None
    if key.get_name() != key_type:
        raise ValueError(f"public key says {key_type} but its blob holds {key.get_name()}")
    return key


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's fingerprint: "SHA256:" and the unpadded base64 digest, as `ssh-keygen -l`."""
    return key.fingerprint
