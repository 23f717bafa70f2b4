# SPDX-License-Identifier: MIT
"""Running one command on an SSH channel: streamed output, stdin, exit status, timeout."""

from __future__ import annotations

import codecs
import re
import select
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import paramiko

from harness.ssh.errors import CommandFailed, CommandTimeoutError, SshError

Stream = Literal["stdout", "stderr"]
OutputCallback = Callable[[Stream, str], None]

_CHUNK = 32768
# Upper bound on one wait: exit-status and window updates do not wake the channel's pipe.
_POLL = 0.05
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Every command's shell line exports this variable set to a fresh tag: after a timeout, the
# tag finds the shell (in its command line) and its children (in their environment) in /proc.
# Closing the channel alone would leave `sleep 30` running, and the SSH "signal" request is
# refused by OpenSSH for root (no privilege separation after a root login) and reaches only
# the shell under dropbear.
TAG_VARIABLE = "HARNESS_CMD_ID"


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left: exit status (-1 if killed by a signal), output, seconds."""

    command: str
    exit_status: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def command_line(command: str | list[str] | tuple[str, ...], env: Mapping[str, str] | None) -> str:
    """The shell line to send: a list is quoted word by word; env becomes `export` in front.

    Environment goes into the command line rather than SSH "env" requests, which OpenSSH
    drops unless AcceptEnv lists the name and dropbear does not honour.
    """
    line = command if isinstance(command, str) else shlex.join(command)
    if not env:
        return line
    exports = []
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"not a valid environment variable name: {name!r}")
        exports.append(f"{name}={shlex.quote(value)}")
    return f"export {' '.join(exports)}; {line}"


def tagged(line: str, tag: str) -> str:
    """`line` with the tag exported first (the tag is hex: no quoting needed)."""
    return f"export {TAG_VARIABLE}={tag}; {line}"


def kill_tagged_line(tag: str) -> str:
    """A shell line that SIGKILLs every process whose command line or environment has `tag`.

    One grep over /proc (a fork per process would cost seconds under TCG). The pattern's
    brackets keep it from matching the grep's own command line and this line's shell. Two
    rounds: a child forked between the first grep and the kill is caught by the second.
    """
    pattern = f"{TAG_VARIABLE[:-1]}[{TAG_VARIABLE[-1]}]={tag}"
    return (
        "for round in 1 2; do for f in $(grep -l -a "
        f"'{pattern}' /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null); "
        'do p=${f#/proc/}; kill -KILL "${p%%/*}" 2>/dev/null; done; done; true'
    )


class _Collector:
    """Decodes the two streams incrementally and hands each piece to the callback."""

    def __init__(self, on_output: OutputCallback | None) -> None:
        self._on_output = on_output
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for name in ("stdout", "stderr")
        }
        self._text: dict[Stream, list[str]] = {"stdout": [], "stderr": []}

    def feed(self, stream: Stream, data: bytes, final: bool = False) -> None:
        text = self._decoders[stream].decode(data, final=final)
        if text:
            self._text[stream].append(text)
            if self._on_output is not None:
                self._on_output(stream, text)

    def finish(self) -> tuple[str, str]:
        self.feed("stdout", b"", final=True)
        self.feed("stderr", b"", final=True)
        return "".join(self._text["stdout"]), "".join(self._text["stderr"])


def run_on_channel(
    channel: paramiko.Channel,
    line: str,
    *,
    exec_line: str,
    kill: Callable[[], str | None],
    timeout: float,
    stdin: bytes | None,
    on_output: OutputCallback | None,
    where: str,
    check: bool,
) -> CommandResult:
    """Execute `exec_line` on a fresh session channel and wait for it, then close the channel.

    `line` is the command as reported in results and errors; `kill()` is called on timeout
    and returns what went wrong, if anything.
    """
    started = time.monotonic()
    deadline = started + timeout
    collector = _Collector(on_output)
    pending = stdin or b""
    ended = False  # the command finished, or we gave up on it and killed it
    try:
        # Create the wake-up pipe before anything can arrive: data or EOF that comes first
        # would not set it, and the first wait would sleep its full poll interval.
        channel.fileno()
        channel.exec_command(exec_line)
        if not pending:
            channel.shutdown_write()  # EOF now, so a command reading stdin does not wait forever
        while True:
            _drain(channel, collector)
            pending = _feed(channel, pending)
            if _finished(channel):
                _drain(channel, collector)
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                channel.close()
                ended = True
                problem = kill()
                stdout, stderr = collector.finish()
                error = CommandTimeoutError(line, timeout, where, stdout, stderr)
                if problem:
                    error.add_note(problem)
                raise error
            _wait(channel, min(remaining, _POLL))
        exit_status = channel.recv_exit_status()
        ended = True
    except (paramiko.SSHException, EOFError, OSError) as err:
        ended = True  # the connection is gone: nothing left to send a kill through
        raise SshError(f"{where}: connection failed while running {line!r}: {err}") from err
    finally:
        channel.close()
        if not ended:
            kill()  # on_output raised, or Ctrl-C: do not leave the command running
    stdout, stderr = collector.finish()
    result = CommandResult(line, exit_status, stdout, stderr, time.monotonic() - started)
    if check and not result.ok:
        raise CommandFailed(line, exit_status, where, stdout, stderr)
    return result


def _drain(channel: paramiko.Channel, collector: _Collector) -> None:
    while channel.recv_ready():
        collector.feed("stdout", channel.recv(_CHUNK))
    while channel.recv_stderr_ready():
        collector.feed("stderr", channel.recv_stderr(_CHUNK))


def _feed(channel: paramiko.Channel, pending: bytes) -> bytes:
    """Send stdin while the window allows (never blocking, so output keeps being read)."""
    # send_ready() is also true for a closed channel: check closed first.
    while pending and not channel.closed and channel.send_ready():
        try:
            pending = pending[channel.send(pending[:_CHUNK]) :]
        except OSError:
            return b""  # the command ended without reading all of it: drop the rest
        if not pending:
            channel.shutdown_write()
    return pending


def _finished(channel: paramiko.Channel) -> bool:
    """All output is in (EOF) and the exit status came, or the server closed the channel.

    Waiting for EOF as well matters: a server may report the exit before the last output.
    """
    if channel.closed:
        return True
    return bool(channel.eof_received) and channel.exit_status_ready()


def _wait(channel: paramiko.Channel, seconds: float) -> None:
    if channel.eof_received:
        # The pipe stays readable after EOF, so select would spin; the exit status is next.
        channel.status_event.wait(seconds)
    else:
        select.select([channel], [], [], seconds)
