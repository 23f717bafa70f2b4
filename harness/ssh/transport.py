# SPDX-License-Identifier: MIT
"""One SSH connection attempt: TCP, banner, key exchange, host-key pin, public-key auth.

Uses paramiko's Transport directly rather than SSHClient: nothing here should look at
~/.ssh, an agent or known_hosts, and the only accepted host key is the one pinned from the image.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import paramiko

from harness.ssh.errors import (
    HostKeyMismatchError,
    SshAuthError,
    SshHandshakeError,
    SshNoAnswerError,
)
from harness.ssh.keys import fingerprint

# paramiko logs every failed probe at ERROR with a traceback; route it to our own logger, which
# has a NullHandler so an unconfigured program stays quiet while a configured one still sees it.
LOGGER_NAME = "harness.ssh.session"
logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

# The host-key algorithms that sign with each key type (RSA keys sign with SHA-2 nowadays).
_SIGNATURE_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each phase of one attempt."""

    connect: float
    banner: float
    handshake: float  # key exchange, and then authentication


def describe(host: str, port: int, user: str) -> str:
    return f"ssh {user}@{host}:{port}"


def open_transport(
    host: str,
    port: int,
    *,
    user: str,
    identity: paramiko.PKey,
    host_key: paramiko.PKey,
    timeouts: Timeouts,
    log_name: str = LOGGER_NAME + ".transport",
) -> paramiko.Transport:
    """An authenticated Transport to host:port, or one of the SshError subclasses.

    SshNoAnswerError: nothing listened or no banner came (retry later). SshHandshakeError: the
    server answered but the handshake failed. HostKeyMismatchError, SshAuthError: retrying will
    not help.
    """
    where = describe(host, port, user)
    try:
        sock = socket.create_connection((host, port), timeout=timeouts.connect)
    except OSError as err:
        raise SshNoAnswerError(f"{where}: cannot connect: {err}") from err
    # Commands are a few small messages each way; Nagle's algorithm would hold one back for
    # the peer's delayed ACK (40 ms per command on a local socket).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        transport = paramiko.Transport(sock)
    except BaseException:
        sock.close()
        raise
    try:
        transport.set_log_channel(log_name)
        _handshake(transport, where, user, identity, host_key, timeouts)
    except BaseException:
        transport.close()
        raise
    return transport


def _handshake(
    transport: paramiko.Transport,
    where: str,
    user: str,
    identity: paramiko.PKey,
    host_key: paramiko.PKey,
    timeouts: Timeouts,
) -> None:
    transport.banner_timeout = timeouts.banner
    transport.auth_timeout = timeouts.handshake
    _prefer_host_key_type(transport, host_key.get_name())
    failure: BaseException | None = None
    try:
        transport.start_client(timeout=timeouts.handshake)
    except (paramiko.SSHException, EOFError, OSError) as err:
        failure = err
    # start_client returns quietly when its timeout runs out before the key exchange is done.
    if failure is not None or not transport.initial_kex_done:
        if not transport.remote_version:
            raise SshNoAnswerError(
                f"{where}: no SSH banner within {timeouts.banner:.1f} s "
                f"({failure or 'timed out'}); the SSH server is not up (yet)"
            ) from failure
        raise SshHandshakeError(
            f"{where}: key exchange with {transport.remote_version!r} failed: "
            f"{failure or f'not done within {timeouts.handshake:g} s'}"
        ) from failure

    offered = transport.get_remote_server_key()
    if offered.asbytes() != host_key.asbytes():
        raise HostKeyMismatchError(
            where,
            f"{host_key.get_name()} {fingerprint(host_key)}",
            f"{offered.get_name()} {fingerprint(offered)}",
        )

    try:
        transport.auth_publickey(user, identity)
    except paramiko.AuthenticationException as err:
        raise SshAuthError(
            f"{where}: the guest refused the run key {fingerprint(identity)} ({err}); is its "
            f"public key in {user}'s authorized_keys in the image, and is {user} allowed to log in?"
        ) from err
    except (paramiko.SSHException, EOFError, OSError) as err:
        raise SshHandshakeError(f"{where}: authentication did not complete: {err}") from err
    if not transport.is_authenticated():
        raise SshAuthError(f"{where}: the guest wants more than the run key to log in as {user}")


def _prefer_host_key_type(transport: paramiko.Transport, key_type: str) -> None:
    """Ask for the pinned type first, so a server with several host keys shows the pinned one.

    Other types stay allowed (after it): a server lacking the pinned type then still shows a
    key, and the mismatch error can name both fingerprints.
    """
    options = transport.get_security_options()
    wanted = _SIGNATURE_ALGORITHMS.get(key_type, (key_type,))
    first = [name for name in wanted if name in options.key_types]
    options.key_types = first + [name for name in options.key_types if name not in first]
