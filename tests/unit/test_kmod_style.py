# SPDX-License-Identifier: MIT
"""kmod/ follows the kernel's coding style: checkpatch --strict finds nothing in its C files."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.kmod.checkpatch import Checkpatch, run_checkpatch

REPO = Path(__file__).resolve().parents[2]


def test_kmod_sources_pass_checkpatch_strict(
    checkpatch_tool: Checkpatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # findings then read kmod/main.c:12
    sources = sorted(Path("kmod").glob("*.c")) + sorted(Path("kmod").glob("*.h"))
    assert any(p.suffix == ".c" for p in sources), f"no C files in {REPO / 'kmod'}"
    report = run_checkpatch(sources, strict=True, checkpatch=checkpatch_tool)
    assert report.clean, f"{checkpatch_tool.label}:\n{report.summary()}"
    assert len(report.files) == len(sources)
