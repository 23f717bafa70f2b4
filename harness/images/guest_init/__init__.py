# SPDX-License-Identifier: MIT
"""Guest-side files shipped as package data: the initrd's /init, the guest's PID 1 and its
power-off commands, and the mmdebstrap customize hook that installs them."""
