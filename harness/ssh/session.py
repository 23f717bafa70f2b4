# SPDX-License-Identifier: MIT
"""Driving a guest over SSH: connect or wait for it, run commands, move files by SFTP.

    key = generate_run_key(run_dir)                     # key.public_line goes into the image
    with wait_for_ssh("127.0.0.1", port, time.monotonic() + 60, identity=key,
                      host_key=manifest_host_key, should_abort=console.panicked) as guest:
        guest.run("modprobe -a vfio vfio_iommu_type1 mdev", timeout=30)
        guest.put(module, "/tmp/mdev_ref.ko", mode=0o644)

Every connection authenticates with the run key only and accepts only the host key pinned from
the image. A command over an open session costs 140-210 ms under TCG and a new connection
0.3-0.9 s: keep one session per guest and batch commands into one shell line where possible.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping

import paramiko

from harness.core.closing import Closing
from harness.ssh.command import (
    CommandResult,
    OutputCallback,
    command_line,
    kill_tagged_line,
    run_on_channel,
    tagged,
)
from harness.ssh.errors import (
    CommandFailed,
    CommandTimeoutError,
    HostKeyMismatchError,
    SshAuthError,
    SshError,
    SshHandshakeError,
    SshNoAnswerError,
    SshUnreachableError,
    SshWaitAbortedError,
)
from harness.ssh.keys import RunKey, fingerprint, generate_run_key, load_run_key
from harness.ssh.keys import parse_public_key as parse_host_key
from harness.ssh.stream import StreamingCommand
from harness.ssh.transport import LOGGER_NAME, Timeouts, describe, open_transport

__all__ = [
    "CommandFailed",
    "CommandResult",
    "CommandTimeoutError",
    "HostKeyMismatchError",
    "RunKey",
    "SshAuthError",
    "SshError",
    "SshHandshakeError",
    "SshNoAnswerError",
    "SshSession",
    "SshUnreachableError",
    "SshWaitAbortedError",
    "StreamingCommand",
    "connect",
    "fingerprint",
    "generate_run_key",
    "load_run_key",
    "parse_host_key",
    "wait_for_ssh",
]

DEFAULT_USER = "root"
# Sent after this many idle seconds: keeps QEMU's user-mode NAT entry and the server's idle
# timers from dropping a session that waits on a long guest command.
DEFAULT_KEEPALIVE = 15.0
DEFAULT_COMMAND_TIMEOUT = 60.0
TRANSPORT_LOGGER = LOGGER_NAME + ".transport"
PROBE_LOGGER = LOGGER_NAME + ".probe"
# A probe that meets a guest not yet listening is routine while booting: paramiko logs it at
# ERROR with a traceback, which would land in every VM test's captured log. Debug-level
# logging still shows them.
logging.getLogger(PROBE_LOGGER).setLevel(logging.CRITICAL)
# For the clean-up after a timeout: one grep over /proc, slow only under a loaded TCG guest.
KILL_TIMEOUT = 15.0

Identity = RunKey | paramiko.PKey
HostKey = str | paramiko.PKey


class SshSession(Closing):
    """An authenticated SSH connection to one guest. Not thread-safe: one caller at a time."""

    def __init__(self, transport: paramiko.Transport, host: str, port: int, user: str) -> None:
        self._transport = transport
        self._sftp: paramiko.SFTPClient | None = None
        self.host = host
        self.port = port
        self.user = user
        self.where = describe(host, port, user)

    @property
    def is_active(self) -> bool:
        return self._transport.is_active()

    def set_keepalive(self, seconds: float) -> None:
        """Send a keepalive after `seconds` of silence (0 turns it off)."""
        # paramiko counts whole seconds and takes 0 for "off": never round 0.5 down to off.
        self._transport.set_keepalive(math.ceil(seconds) if seconds > 0 else 0)

    def run(
        self,
        command: str | list[str] | tuple[str, ...],
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        stdin: bytes | str | None = None,
        on_output: OutputCallback | None = None,
    ) -> CommandResult:
        """Run `command` through the guest user's shell and wait at most `timeout` seconds.

        A string is a shell line; a list is quoted word by word. `on_output(stream, text)` gets
        each piece of stdout/stderr as it arrives. Past the timeout the command is SIGKILLed,
        its channel closed and CommandTimeoutError raised; with `check`, a non-zero exit raises
        CommandFailed. The session stays usable after both.
        """
        line = command_line(command, env)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        tag = secrets.token_hex(8)
        return run_on_channel(
            self._channel(line, timeout),
            line,
            exec_line=tagged(line, tag),
            kill=lambda: self._kill_tagged(tag),
            timeout=timeout,
            stdin=data,
            on_output=on_output,
            where=self.where,
            check=check,
        )

    def start(
        self,
        command: str | list[str] | tuple[str, ...],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> StreamingCommand:
        """Start `command` and return at once: talk to it line by line (see stream.py).

        `timeout` bounds opening the channel only. Closing the result kills what is left.
        """
        line = command_line(command, env)
        tag = secrets.token_hex(8)
        channel = self._channel(line, timeout)
        try:
            channel.exec_command(tagged(line, tag))
        except (paramiko.SSHException, EOFError, OSError) as err:
            channel.close()
            raise SshError(f"{self.where}: cannot start {line!r}: {err}") from err
        return StreamingCommand(
            channel, line, kill=lambda: self._kill_tagged(tag), where=self.where
        )

    def open_channel(self, timeout: float = 30.0) -> paramiko.Channel:
        """A raw session channel, e.g. for an interactive shell (see shell.py)."""
        return self._channel("an interactive shell", timeout)

    def _channel(self, line: str, timeout: float) -> paramiko.Channel:
        try:
            return self._transport.open_session(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as err:
            raise SshError(
                f"{self.where}: cannot open a channel for {line!r}: {err}; the connection is "
                "probably gone (guest crashed or rebooted?)"
            ) from err

    def _kill_tagged(self, tag: str) -> str | None:
        """Kill what a timed-out command left running; say what went wrong, if anything."""
        line = kill_tagged_line(tag)
        try:
            run_on_channel(
                self._channel(line, KILL_TIMEOUT),
                line,
                exec_line=line,
                kill=lambda: None,
                timeout=KILL_TIMEOUT,
                stdin=None,
                on_output=None,
                where=self.where,
                check=True,
            )
        except SshError as err:
            return f"its processes may still run in the guest: killing them failed: {err}"
        return None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """The session's SFTP client, opened on first use."""
        if self._sftp is None:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(self._transport)
            except (paramiko.SSHException, EOFError, OSError) as err:
                raise SshError(
                    f"{self.where}: cannot start SFTP ({err}); the guest needs an SFTP server "
                    "(openssh-sftp-server provides /usr/lib/sftp-server, which dropbear runs)"
                ) from err
            if self._sftp is None:
                raise SshError(f"{self.where}: the server refused the SFTP subsystem")
        return self._sftp

    def put(self, local: str | os.PathLike[str], remote: str, mode: int | None = None) -> None:
        """Copy a local file to `remote`, then give it `mode` (e.g. 0o755) if one is given."""
        try:
            self.sftp.put(os.fspath(local), remote)
            if mode is not None:
                self.sftp.chmod(remote, mode)
        except OSError as err:
            err.add_note(f"while copying {os.fspath(local)} to {remote} on {self.where}")
            raise

    def get(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy the guest's `remote` file to `local`."""
        try:
            self.sftp.get(remote, os.fspath(local))
        except OSError as err:
            err.add_note(f"while copying {remote} on {self.where} to {os.fspath(local)}")
            raise

    def write_text(self, remote: str, text: str, mode: int | None = None) -> None:
        """Write `text` (UTF-8) to the guest's `remote` file, with `mode` if given."""
        try:
            with self.sftp.open(remote, "w") as handle:
                handle.write(text.encode())
                if mode is not None:
                    handle.chmod(mode)
        except OSError as err:
            err.add_note(f"while writing {remote} on {self.where}")
            raise

    def read_text(self, remote: str) -> str:
        """The guest's `remote` file, decoded as UTF-8."""
        try:
            with self.sftp.open(remote, "r") as handle:
                return handle.read().decode()
        except OSError as err:
            err.add_note(f"while reading {remote} on {self.where}")
            raise

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        self._transport.close()


def _pkey(identity: Identity) -> paramiko.PKey:
    return identity.pkey if isinstance(identity, RunKey) else identity


def _pinned(host_key: HostKey) -> paramiko.PKey:
    return parse_host_key(host_key) if isinstance(host_key, str) else host_key


def connect(
    host: str,
    port: int,
    *,
    identity: Identity,
    host_key: HostKey,
    user: str = DEFAULT_USER,
    timeout: float = 30.0,
    keepalive: float = DEFAULT_KEEPALIVE,
) -> SshSession:
    """One connection attempt to a guest that should be up; see wait_for_ssh while booting.

    `host_key` is the pinned key: an OpenSSH "type base64" line (as in the image manifest) or
    a PKey. Any other host key raises HostKeyMismatchError.
    """
    transport = open_transport(
        host,
        port,
        user=user,
        identity=_pkey(identity),
        host_key=_pinned(host_key),
        timeouts=Timeouts(connect=timeout, banner=timeout, handshake=timeout),
    )
    session = SshSession(transport, host, port, user)
    session.set_keepalive(keepalive)
    return session


def _without_prefix(error: SshError | None, where: str) -> str:
    if error is None:
        return "none (no attempt made)"
    return str(error).removeprefix(f"{where}: ")


def wait_for_ssh(
    host: str,
    port: int,
    deadline: float,
    *,
    identity: Identity,
    host_key: HostKey,
    user: str = DEFAULT_USER,
    should_abort: Callable[[], bool] | None = None,
    guest_ready: Callable[[], bool] | None = None,
    first_probe_timeout: float = 1.0,
    max_probe_timeout: float = 5.0,
    answer_timeout: float = 30.0,
    max_pause: float = 1.0,
    keepalive: float = DEFAULT_KEEPALIVE,
) -> SshSession:
    """Probe host:port until the guest's SSH server lets us in; return that session.

    `deadline` is a time.monotonic() value. QEMU's hostfwd accepts TCP long before the guest
    listens, so a probe that gets no banner within its timeout is dropped and retried, with the
    banner timeout growing from `first_probe_timeout` to `max_probe_timeout` and pauses between
    fast failures growing to `max_pause`: probes that give up too quickly pile up as half-open
    connections in a slow guest and hit OpenSSH's MaxStartups. Once the server has answered,
    the handshake gets `answer_timeout`. `should_abort()` is asked before every probe and
    during pauses (it may also raise its own error), e.g. when the console shows a panic.
    `guest_ready()`, also asked during pauses, ends a pause early once it returns True (the
    guest announced on its console that its SSH server listens), so the next probe is not
    up to `max_pause` late.

    Raises SshUnreachableError at the deadline, SshWaitAbortedError, and at once
    HostKeyMismatchError or SshAuthError, which retrying cannot fix.
    """
    pkey, pinned = _pkey(identity), _pinned(host_key)
    where = describe(host, port, user)
    started = time.monotonic()
    probe_timeout, pause = first_probe_timeout, 0.05
    answered = False
    attempts = 0
    last_error: SshError | None = None
    while True:
        if should_abort is not None and should_abort():
            raise SshWaitAbortedError(f"{where}: stopped waiting for SSH: should_abort() said so")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SshUnreachableError(
                f"{where}: no SSH session after {time.monotonic() - started:.1f} s and "
                f"{attempts} attempts; last error: {_without_prefix(last_error, where)}. "
                "Check the console log: did the guest boot and start its SSH server?"
            )
        banner = answer_timeout if answered else probe_timeout
        timeouts = Timeouts(
            connect=min(probe_timeout, remaining),
            banner=min(banner, remaining),
            handshake=min(answer_timeout, remaining),
        )
        attempt_started = time.monotonic()
        attempts += 1
        try:
            transport = open_transport(
                host,
                port,
                user=user,
                identity=pkey,
                host_key=pinned,
                timeouts=timeouts,
                log_name=PROBE_LOGGER,  # failed probes are expected: let them be filtered
            )
        except SshNoAnswerError as err:
            last_error = err
            probe_timeout = min(probe_timeout * 2, max_probe_timeout)
        except SshHandshakeError as err:
            last_error = err
            answered = True
        else:
            transport.set_log_channel(TRANSPORT_LOGGER)
            session = SshSession(transport, host, port, user)
            session.set_keepalive(keepalive)
            return session
        # Pause only after a fast failure (refused, closed at once); a timeout already waited.
        wait_until = min(attempt_started + pause, deadline)
        pause = min(pause * 2, max_pause)
        while (left := wait_until - time.monotonic()) > 0:
            if should_abort is not None and should_abort():
                break  # reported at the top of the loop
            if guest_ready is not None and guest_ready():
                pause = min(pause, 0.05)
                break
            time.sleep(min(left, 0.05))
