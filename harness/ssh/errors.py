# SPDX-License-Identifier: MIT
"""Errors of the SSH layer: each says which guest, what went wrong and what to check."""

from __future__ import annotations

# How much of a failed command's stderr goes into the message: enough for a traceback's end.
STDERR_TAIL_LINES = 20
STDERR_TAIL_CHARS = 4000


def tail(text: str, lines: int = STDERR_TAIL_LINES, chars: int = STDERR_TAIL_CHARS) -> str:
    """The last `lines` lines of `text`, at most `chars` characters."""
    kept = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return kept[-chars:]


class SshError(RuntimeError):
    """Base of every error raised by harness.ssh.session."""


class SshNoAnswerError(SshError):
    """The port took no SSH connection or never sent an SSH banner (the guest is not up yet)."""


class SshHandshakeError(SshError):
    """The server sent its banner, but key exchange or the connection failed afterwards."""


class HostKeyMismatchError(SshError):
    """The server's host key is not the one pinned from the image."""

    def __init__(self, where: str, expected: str, offered: str) -> None:
        super().__init__(
            f"{where}: host key mismatch: the image pins {expected} but the server offered "
            f"{offered}; this is not the guest the image describes (stale image manifest, or a "
            "different process on the forwarded port). Rebuild the image or check the port."
        )
        self.expected = expected
        self.offered = offered
        self._args = (where, expected, offered)

    def __reduce__(self) -> tuple[type[HostKeyMismatchError], tuple[str, str, str]]:
        return (type(self), self._args)


class SshAuthError(SshError):
    """The guest refused the run key."""


class SshUnreachableError(SshError):
    """wait_for_ssh reached its deadline without an SSH session."""


class SshWaitAbortedError(SshError):
    """wait_for_ssh stopped because should_abort() said so (e.g. the console shows a panic)."""


class CommandTimeoutError(SshError):
    """A command ran past its timeout; its channel was closed and the process signalled."""

    def __init__(self, command: str, timeout: float, where: str, stdout: str, stderr: str) -> None:
        message = f"{where}: command timed out after {timeout:g} s: {command}"
        if stderr.strip():
            message += f"\nstderr (tail):\n{tail(stderr)}"
        super().__init__(message)
        self.command = command
        self.timeout = timeout
        self.stdout = stdout
        self.stderr = stderr
        self._args = (command, timeout, where, stdout, stderr)

    def __reduce__(self) -> tuple[type[CommandTimeoutError], tuple[str, float, str, str, str]]:
        return (type(self), self._args)


class CommandFailed(SshError):  # noqa: N818 -- the name issue #3 asks for
    """A command exited non-zero (or was killed) while check=True."""

    def __init__(
        self, command: str, exit_status: int, where: str, stdout: str, stderr: str
    ) -> None:
        if exit_status < 0:
            how = "ended without an exit status (killed by a signal?)"
        else:
            how = f"exited with status {exit_status}"
        message = f"{where}: command {how}: {command}"
        message += f"\nstderr (tail):\n{tail(stderr)}" if stderr.strip() else "\n(no stderr)"
        super().__init__(message)
        self.command = command
        self.exit_status = exit_status
        self.stdout = stdout
        self.stderr = stderr
        self._args = (command, exit_status, where, stdout, stderr)

    def __reduce__(self) -> tuple[type[CommandFailed], tuple[str, int, str, str, str]]:
        return (type(self), self._args)
