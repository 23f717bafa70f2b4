# SPDX-License-Identifier: MIT
"""Config fragments: parsing, merging, and catching symbols Kconfig dropped (no compiling)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.kernel.fragments import (
    NOT_SET,
    ConfigMismatchError,
    FragmentError,
    Request,
    config_mismatches,
    enabled_count,
    merge_requests,
    parse_dotconfig,
    parse_fragment,
    verify_config,
)

FRAGMENT_DIR = Path(__file__).resolve().parents[2] / "vm_images" / "kernels"

# What `make olddefconfig` writes, trimmed: a header, values, an invisible-symbol-free tail.
FINAL_CONFIG = """\
#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.12.117 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT="gcc (Debian 12.2.0-14+deb12u1) 12.2.0"
CONFIG_64BIT=y
# CONFIG_EXPERT is not set
CONFIG_VFIO=y
CONFIG_VFIO_MDEV=m
CONFIG_SAMPLE_VFIO_MDEV_MTTY=m
CONFIG_LOG_BUF_SHIFT=17
# CONFIG_SLUB_TINY is not set

#
# Debugging
#
CONFIG_KASAN=y
"""


def requests_of(text: str, name: str = "f.config") -> dict[str, Request]:
    return merge_requests([parse_fragment(text, name)])


def test_parse_fragment_values_and_origins() -> None:
    text = 'CONFIG_A=y\n\n# a comment\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D="x y"\n'
    assert parse_fragment(text, "base.config") == [
        Request("A", "y", "base.config:1"),
        Request("B", "m", "base.config:4"),
        Request("C", NOT_SET, "base.config:5"),
        Request("D", '"x y"', "base.config:6"),
    ]


@pytest.mark.parametrize(
    "line", ["VFIO=y", "CONFIG_VFIO", "# CONFIG_VFIO is unset", "CONFIG VFIO=y"]
)
def test_parse_fragment_rejects_lines_that_are_no_config(line: str) -> None:
    with pytest.raises(FragmentError, match=r"x\.config:2"):
        parse_fragment(f"CONFIG_A=y\n{line}\n", "x.config")


def test_later_fragment_overrides_earlier() -> None:
    merged = merge_requests(
        [parse_fragment("CONFIG_A=y\nCONFIG_B=y\n", "base"), parse_fragment("CONFIG_A=m\n", "dbg")]
    )
    assert merged["A"] == Request("A", "m", "dbg:1")
    assert merged["B"].value == "y"


def test_parse_dotconfig() -> None:
    values = parse_dotconfig(FINAL_CONFIG)
    assert values["64BIT"] == "y"
    assert values["EXPERT"] == NOT_SET
    assert values["VFIO_MDEV"] == "m"
    assert values["LOG_BUF_SHIFT"] == "17"
    assert values["CC_VERSION_TEXT"].startswith('"gcc')
    assert "Automatically" not in " ".join(values)


def test_everything_kept_passes() -> None:
    requests = requests_of(
        "CONFIG_VFIO=y\nCONFIG_VFIO_MDEV=m\n# CONFIG_EXPERT is not set\nCONFIG_LOG_BUF_SHIFT=17\n"
    )
    verify_config(requests, FINAL_CONFIG)


def test_not_set_is_satisfied_by_an_absent_symbol() -> None:
    assert config_mismatches(requests_of("# CONFIG_NOWHERE is not set\n"), {}) == []


def test_dropped_symbol_is_named_with_its_origin() -> None:
    requests = requests_of("CONFIG_VFIO=y\nCONFIG_IOMMUFD=y\n", "base.config")
    with pytest.raises(ConfigMismatchError) as caught:
        verify_config(requests, FINAL_CONFIG)
    assert [m.request.symbol for m in caught.value.mismatches] == ["IOMMUFD"]
    message = str(caught.value)
    assert "CONFIG_IOMMUFD: requested y (base.config:2), got absent" in message


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("CONFIG_VFIO_MDEV=y\n", "CONFIG_VFIO_MDEV: requested y (f.config:1), got m"),
        ("CONFIG_VFIO=m\n", "CONFIG_VFIO: requested m (f.config:1), got y"),
        ("CONFIG_EXPERT=y\n", "CONFIG_EXPERT: requested y (f.config:1), got not set"),
        ("# CONFIG_KASAN is not set\n", "CONFIG_KASAN: requested not set (f.config:1), got y"),
        ("CONFIG_LOG_BUF_SHIFT=18\n", "requested 18 (f.config:1), got 17"),
    ],
)
def test_changed_values_are_reported(fragment: str, expected: str) -> None:
    mismatches = config_mismatches(requests_of(fragment), parse_dotconfig(FINAL_CONFIG))
    assert len(mismatches) == 1
    assert expected in mismatches[0].describe()


def test_enabled_count() -> None:
    assert enabled_count(FINAL_CONFIG) == 5


@pytest.mark.parametrize("name", ["base.config", "debug.config"])
def test_shipped_fragments_parse(name: str) -> None:
    requests = parse_fragment((FRAGMENT_DIR / name).read_text(encoding="utf-8"), name)
    symbols = [r.symbol for r in requests]
    assert len(symbols) == len(set(symbols)), "a symbol twice in one fragment"


def test_base_fragment_makes_mdev_selectable() -> None:
    base = {
        r.symbol: r.value
        for r in parse_fragment(
            (FRAGMENT_DIR / "base.config").read_text(encoding="utf-8"), "base.config"
        )
    }
    # VFIO_MDEV has no prompt from 6.12 on: only a selecting symbol brings it in.
    assert base["SAMPLE_VFIO_MDEV_MTTY"] in ("y", "m")
    for symbol in ("IOMMUFD", "VFIO_DEVICE_CDEV", "VFIO_IOMMU_TYPE1", "PVH", "BLK_DEV_INITRD"):
        assert base[symbol] == "y"
