# SPDX-License-Identifier: MIT
from __future__ import annotations

import pytest

from harness.uapi.raw.versions import KernelVersion, Layout, kv


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6.1.0-28-amd64", KernelVersion(6, 1, 0)),
        ("6.12.117+deb13-amd64", KernelVersion(6, 12, 117)),
        ("7.2.0-rc3", KernelVersion(7, 2, 0)),
        ("6.1", KernelVersion(6, 1, 0)),
    ],
)
def test_parse_uname_style_versions(text: str, expected: KernelVersion) -> None:
    assert KernelVersion.parse(text) == expected


def test_version_code_decodes_like_the_kernel_macro() -> None:
    # LINUX_VERSION_CODE of Debian's 6.12.117 headers; KERNEL_VERSION saturates patch at 255.
    assert KernelVersion.from_code(396405) == KernelVersion(6, 12, 117)
    assert KernelVersion.from_code((6 << 16) | (1 << 8) | 255) == KernelVersion(6, 1, 255)


def test_ordering_is_numeric_not_lexical() -> None:
    assert kv("6.9") < kv("6.12") < kv("7.0")
    with pytest.raises(ValueError):
        KernelVersion.parse("linux")


def test_layout_validity_window_is_half_open() -> None:
    old = Layout("s", object, kv("6.1"), kv("6.2"))
    assert old.valid_for(kv("6.1.150")) and not old.valid_for(kv("6.2"))
    new = Layout("s", object, kv("6.2"))
    assert new.valid_for(kv("7.2")) and not new.valid_for(kv("6.1"))
