# SPDX-License-Identifier: MIT
"""The console shell of harness-init (kernel parameter harness.shell=TTY), run as the guest
runs it: its command line from harness_init.sh, in a background list of dash, on a pty. A
Ctrl-C typed there must interrupt the command and give the prompt back."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import time
from importlib import resources

import pytest

PROMPT = b"P# "


def shell_command() -> str:
    script = resources.files("harness.images.guest_init").joinpath("harness_init.sh").read_text()
    lines = script.splitlines()
    at = next(i for i, line in enumerate(lines) if "sh -i" in line)
    command = lines[at].strip()
    match = re.search(r"setsid .*", command)
    assert match, command
    return match.group(0)


def read_for(fd: int, seconds: float, until: bytes | None = None) -> bytes:
    """What the shell writes within `seconds`, or up to `until`."""
    out, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline and not (until and until in out):
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return out


@pytest.mark.skipif(shutil.which("dash") is None or shutil.which("setsid") is None, reason="dash")
def test_ctrl_c_at_the_console_interrupts_the_command() -> None:
    master, slave = pty.openpty()
    tty = os.ttyname(slave)
    command = shell_command().replace('"/dev/$shell_tty"', tty)
    background = f"( PS1='{PROMPT.decode()}' {command} ) &"
    subprocess.run(["dash", "-c", background], check=True, stdin=subprocess.DEVNULL)
    try:
        assert PROMPT in read_for(master, 5.0, until=PROMPT)
        os.write(master, b"sleep 30; echo NOT-INTERRUPTED\n")
        read_for(master, 0.5)
        started = time.monotonic()
        os.write(master, b"\x03")
        after = read_for(master, 3.0, until=PROMPT)
        assert PROMPT in after, f"no prompt after Ctrl-C: {after!r}"
        assert b"NOT-INTERRUPTED" not in after
        assert time.monotonic() - started < 3.5
    finally:
        os.write(master, b"exit\n")
        os.close(master)
        os.close(slave)
