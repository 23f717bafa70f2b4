# SPDX-License-Identifier: MIT
"""harness.refdev mirrors kmod/: every HMDEV_* value of hmdev_regs.h, both ways, and the sizes
and names hmdev.h shares with harness.refdev.contract."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from harness.refdev import contract, registers

KMOD = Path(__file__).resolve().parents[2] / "kmod"
PREFIX = "HMDEV_"
# `#define NAME VALUE` with an optional trailing comment; guards without a value don't match.
_DEFINE = re.compile(
    r"^[ \t]*#[ \t]*define[ \t]+(?P<name>\w+)[ \t]+(?P<value>[^/\n]+?)[ \t]*(?:/\*.*\*/)?[ \t]*$",
    re.MULTILINE,
)
_INT_SUFFIX = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b")
# The kernel's helpers that checkpatch prefers to shifts and literal sizes.
_BIT = re.compile(r"\b(?:BIT|BIT_ULL)\((\d+)\)")
_SZ = re.compile(r"\bSZ_(\d+)([KMG]?)\b")
_SZ_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_ALLOWED = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Constant,
    ast.LShift,
    ast.RShift,
    ast.BitOr,
    ast.BitAnd,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Invert,
)


def c_value(text: str) -> int | str:
    """An integer constant expression ("0x1de5", "(1U << 20)", "BIT(4)", "SZ_1M") or a string
    literal."""
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    expression = _INT_SUFFIX.sub(r"\1", text)
    expression = _BIT.sub(r"(1 << \1)", expression)
    expression = _SZ.sub(lambda m: str(int(m[1]) * _SZ_UNITS[m[2]]), expression)
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise ValueError(f"not a constant expression: {text!r}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED) or (
            isinstance(node, ast.Constant) and not isinstance(node.value, int)
        ):
            raise ValueError(f"not a constant integer expression: {text!r}")
    value = eval(compile(tree, "<define>", "eval"), {"__builtins__": {}})  # only int ops left
    assert isinstance(value, int)
    return value


def defines(header: Path, *, all_constant: bool) -> dict[str, int | str]:
    """HMDEV_* object-like macros with a value. `all_constant`: every one must be a constant
    (the register map); otherwise other macros are left out."""
    return parse_defines(header.read_text(encoding="utf-8"), all_constant=all_constant)


def parse_defines(text: str, *, all_constant: bool) -> dict[str, int | str]:
    found = {}
    for match in _DEFINE.finditer(text):
        name, value = match["name"], match["value"]
        if not name.startswith(PREFIX):
            continue
        try:
            found[name] = c_value(value)
        except ValueError:
            if all_constant:
                raise
    return found


def python_constants() -> dict[str, int]:
    return {
        name: value
        for name, value in vars(registers).items()
        if name.isupper() and isinstance(value, int)
    }


def test_the_parser_reads_c_constants() -> None:
    assert c_value("0x1de5") == 0x1DE5
    assert c_value("(1U << 20)") == 1 << 20
    assert c_value("0x00010000UL") == 0x10000
    assert c_value("BIT(5)") == 0x20
    assert c_value("(BIT(0) | BIT(1))") == 3
    assert c_value("SZ_1M") == 1 << 20
    assert c_value("SZ_4K") == 4096
    assert c_value('"vfio_harness_mdev"') == "vfio_harness_mdev"
    with pytest.raises(ValueError):
        c_value("sizeof(struct foo)")
    header = "#define HMDEV_A\t\t0x10\t/* a comment */\n#define HMDEV_H\n#define OTHER 1\n"
    assert parse_defines(header, all_constant=True) == {"HMDEV_A": 0x10}
    with_function = header + "#define HMDEV_F(x)\t((x) + 1)\n#define HMDEV_S sizeof(int)\n"
    assert parse_defines(with_function, all_constant=False) == {"HMDEV_A": 0x10}
    with pytest.raises(ValueError):
        parse_defines(with_function, all_constant=True)


def test_every_register_define_has_the_same_value_in_python() -> None:
    header = defines(KMOD / "hmdev_regs.h", all_constant=True)
    assert len(header) >= 40, f"parsed only {sorted(header)} from hmdev_regs.h"
    python = python_constants()
    missing = sorted(n for n in header if n.removeprefix(PREFIX) not in python)
    assert missing == [], f"in kmod/hmdev_regs.h but not in harness/refdev/registers.py: {missing}"
    differ = {
        name: (hex(value) if isinstance(value, int) else value, hex(python[name[len(PREFIX) :]]))
        for name, value in header.items()
        if python[name[len(PREFIX) :]] != value
    }
    assert differ == {}, f"header value vs registers.py value: {differ}"


def test_registers_py_has_nothing_the_header_lacks() -> None:
    header = {n.removeprefix(PREFIX) for n in defines(KMOD / "hmdev_regs.h", all_constant=True)}
    extra = sorted(set(python_constants()) - header)
    assert extra == [], f"in registers.py but not in kmod/hmdev_regs.h: {extra}"


SHARED_WITH_HMDEV_H = {
    "HMDEV_NAME": contract.MODULE_NAME,
    "HMDEV_CONFIG_SIZE": contract.CONFIG_SIZE,
    "HMDEV_BAR0_SIZE": contract.BAR0_SIZE,
    "HMDEV_MAX_KEPT_PAGES": contract.MAX_KEPT_PAGES,
    "HMDEV_PIN_BATCH": contract.PIN_BATCH,
    "HMDEV_DMA_MAX_LEN": contract.DMA_MAX_LEN,
}


def test_contract_sizes_and_names_match_hmdev_h() -> None:
    header = defines(KMOD / "hmdev.h", all_constant=False)
    seen = {name: header.get(name) for name in SHARED_WITH_HMDEV_H}
    assert seen == SHARED_WITH_HMDEV_H


def test_type_ids_and_identity_follow_the_readme() -> None:
    assert [t.type_id for t in contract.TYPES] == [
        "vfio_harness_mdev-small",
        "vfio_harness_mdev-large",
    ]
    assert [t.subsystem_id for t in contract.TYPES] == [1, 2]
    assert registers.ID_VALUE.to_bytes(4, "little") == b"VDMH"
    # The pool (64 MiB) and the per-type cap (8) both limit available_instances.
    assert contract.available_instances(contract.SMALL.mem_size, 0, 0) == 8
    assert contract.available_instances(contract.LARGE.mem_size, 0, 1 << 20) == 7
    assert contract.available_instances(contract.LARGE.mem_size, 8, 0) == 0
