# SPDX-License-Identifier: MIT
"""SSH to a guest over paramiko: sessions (session.py), commands and their results
(command.py), streams (stream.py), interactive shells (shell.py), keys (keys.py), the
transport's retries (transport.py) and what failed (errors.py). Knows nothing of QEMU."""
