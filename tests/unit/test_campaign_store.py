# SPDX-License-Identifier: MIT
"""The campaign's corpus and findings in the cache, and the reproducers it writes."""

from __future__ import annotations

import ast
import json
import random
import sys
import types
from pathlib import Path

import pytest

from harness.campaign import findings as findings_mod
from harness.campaign.corpus import Corpus
from harness.campaign.findings import FindingRecord, FindingStore


def test_corpus_keeps_programs_with_new_pcs_and_survives_a_restart(tmp_path: Path) -> None:
    corpus = Corpus.open(tmp_path)
    assert corpus.add([{"op": "open", "mode": "type1"}], [1, 2, 3]) == 3
    assert corpus.add([{"op": "reset"}], [2, 3]) == 0  # nothing new: not kept
    assert corpus.add([{"op": "close"}], [3, 4]) == 1
    corpus.save()
    again = Corpus.open(tmp_path)
    assert again.loaded == (2, 4)
    assert sorted(map(json.dumps, again.programs)) == sorted(map(json.dumps, corpus.programs))
    assert again.pick(random.Random(0)) in corpus.programs


def test_corpus_ignores_a_half_written_program(tmp_path: Path) -> None:
    Corpus.open(tmp_path).add([{"op": "reset"}], [1])
    (tmp_path / "corpus" / "broken.json").write_text("[{")
    assert Corpus.open(tmp_path).programs == [[{"op": "reset"}]]


def record(**changes: object) -> FindingRecord:
    values: dict[str, object] = {
        "fingerprint": "d8a26ec9b3fdc310",
        "kind": "warning",
        "headline": 'WARNING: CPU: 1 PID: 107 at main.c:541 hmdev_ioctl+0x7d5/0xa00 """ \\x',
        "lines": ["------------[ cut here ]------------", "WARNING: ... hmdev_ioctl"],
        "program": [{"op": "open", "mode": "iommufd"}, {"op": "reset"}],
        "original_ops": 6,
        "found_after_s": 8.7,
        "iterations": 6,
        "minimize_runs": 11,
        "minimize_s": 0.4,
        "kernel": "debug",
        "mdev_type": "vfio_harness_mdev-small",
        "accelerator": "tcg",
    }
    values.update(changes)
    return FindingRecord(**values)  # type: ignore[arg-type]


def run_reproducer(path: Path, reports: list[str], monkeypatch: pytest.MonkeyPatch) -> object:
    """Import the reproducer with replay() faked; call its test."""
    calls: list[tuple[object, str, str]] = []

    def fake_replay(program: object, headline: str, mdev_type: str) -> list[str]:
        calls.append((program, headline, mdev_type))
        return reports

    replay_module = types.ModuleType("harness.fuzz.replay")
    replay_module.replay = fake_replay  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "harness.fuzz.replay", replay_module)
    namespace: dict[str, object] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    test = namespace["test_finding_d8a26ec9b3fdc310"]
    assert callable(test)
    test()
    return calls


def test_reproducer_fails_while_the_kernel_reports_and_passes_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FindingStore(tmp_path)
    path = store.save(record())
    assert store.known("d8a26ec9b3fdc310")
    source = path.read_text()
    tree = ast.parse(source)
    doc = ast.get_docstring(tree) or ""
    assert "1. open mode=iommufd" in doc and "2. reset" in doc
    assert "minimized from 6 to 2 operations" in doc
    assert 'hmdev_ioctl+0x7d5/0xa00 """ \\x' in doc  # quotes and backslashes survive
    calls = run_reproducer(path, [], monkeypatch)
    program = [{"op": "open", "mode": "iommufd"}, {"op": "reset"}]
    assert calls == [(program, record().headline, "vfio_harness_mdev-small")]
    with pytest.raises(AssertionError, match="the kernel still reports WARNING"):
        run_reproducer(path, ["[ 1.0] WARNING: CPU: 0 PID: 1 at main.c:541"], monkeypatch)


def test_console_control_characters_make_a_valid_module(tmp_path: Path) -> None:
    path = FindingStore(tmp_path).save(
        record(headline="BUG: x\x00y \x1b[0m", lines=["a\x00b", "\x07bell", "ünïcode"])
    )
    source = path.read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(source)) or ""
    assert "a\\x00b" in doc and "ünïcode" in doc


def test_store_reads_back_its_records(tmp_path: Path) -> None:
    store = FindingStore(tmp_path)
    store.save(record())
    assert store.records() == [record()]
    assert findings_mod.RECORD == "finding.json"
