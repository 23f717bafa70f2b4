# SPDX-License-Identifier: MIT
"""How the kernel parses what user space writes to mdev attributes, for the fake to reproduce.

Each function follows one kernel routine and raises OSError with the errno that routine returns.
"""

from __future__ import annotations

import errno
import os

UUID_STRING_LEN = 36
# kernfs_fop_write_iter() hands store() at most one page.
PAGE_SIZE = 4096
_HYPHEN_POSITIONS = frozenset({8, 13, 18, 23})
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_ULONG_MAX = (1 << 64) - 1


def _error(err: int, detail: str) -> OSError:
    return OSError(err, f"{os.strerror(err)} ({detail})")


def store_buffer(data: bytes) -> bytes:
    """What store() sees as a C string: kernfs copies at most a page and NUL-terminates it."""
    return data[:PAGE_SIZE]


def c_string(buf: bytes) -> bytes:
    """The buffer up to its first NUL, as kstrndup() and the str* routines read it."""
    return buf.split(b"\0", 1)[0]


def uuid_is_valid(text: bytes) -> bool:
    """lib/uuid.c uuid_is_valid(): 36 chars, '-' at 8/13/18/23, hex digits elsewhere.

    Only the first 36 bytes are looked at; what follows is never examined.
    """
    if len(text) < UUID_STRING_LEN:
        return False
    for index in range(UUID_STRING_LEN):
        byte = text[index]
        if index in _HYPHEN_POSITIONS:
            if byte != ord("-"):
                return False
        elif byte not in _HEX_DIGITS:
            return False
    return True


def parse_create(data: bytes) -> str:
    """mdev_sysfs.c create_store() + guid_parse(): the new device's name, or EINVAL.

    create_store() takes 36 or 37 bytes, so `echo $uuid > create` (newline appended) works; the
    37th byte is not checked by guid_parse() at all. The device is named with %pUl, so an
    upper-case UUID creates a lower-case device.
    """
    if not UUID_STRING_LEN <= len(data) <= UUID_STRING_LEN + 1:
        raise _error(errno.EINVAL, f"create_store: {len(data)} bytes, not 36 or 37")
    text = c_string(data)
    if not uuid_is_valid(text):
        raise _error(errno.EINVAL, f"guid_parse: {data!r} is not a UUID")
    return text[:UUID_STRING_LEN].decode("ascii").lower()


def kstrtoul(data: bytes) -> int:
    """lib/kstrtox.c kstrtoul(s, 0): [+]digits[\\n], radix from the prefix (0x: 16, 0: 8).

    EINVAL for anything else (sign '-', spaces, empty, trailing garbage), ERANGE past 2**64-1.
    """
    text = c_string(data)
    if text.startswith(b"+"):
        text = text[1:]
    # _parse_integer_fixup_radix(): "0x" counts as a prefix only when a hex digit follows;
    # either way "0x" without digits ends as EINVAL, so later kernels' change there is moot.
    if text[:1] == b"0":
        if text[1:2].lower() == b"x" and text[2:3] and text[2] in _HEX_DIGITS:
            base, text = 16, text[2:]
        else:
            base = 8
    else:
        base = 10
    value = 0
    consumed = 0
    for byte in text:
        digit = int(chr(byte), 16) if byte in _HEX_DIGITS else 16
        if digit >= base:
            break
        value = value * base + digit
        consumed += 1
    if consumed == 0:
        raise _error(errno.EINVAL, f"kstrtoul: no digits in {data!r}")
    if value > _ULONG_MAX:
        raise _error(errno.ERANGE, f"kstrtoul: {data!r} overflows unsigned long")
    rest = text[consumed:]
    if rest.startswith(b"\n"):
        rest = rest[1:]
    if rest:
        raise _error(errno.EINVAL, f"kstrtoul: trailing {rest!r} in {data!r}")
    return value


def sysfs_streq(buffer: bytes, name: str) -> bool:
    """lib/string.c sysfs_streq(): equal, ignoring one trailing newline on either side."""
    text = c_string(buffer)
    if text.endswith(b"\n"):
        text = text[:-1]
    return text == name.encode()
