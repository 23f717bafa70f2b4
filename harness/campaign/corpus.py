# SPDX-License-Identifier: MIT
"""The campaign's memory, kept in the cache between runs: the programs that reached new code
(the corpus), every PC reached so far, and how coverage grew.

    corpus = Corpus.open(cache_dir("fuzz", target))
    corpus.add(program, new_pcs)           # True if any PC was new: the program is kept
    corpus.pick(rng)                       # a kept program, to mutate

A target is a driver, a device type and a kernel: PCs are only comparable within one.
Programs are files named by their digest, so two campaigns on one target share them safely.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PROGRAMS = "corpus"
COVERAGE = "pcs.json"


def program_digest(program: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(program, sort_keys=True).encode()).hexdigest()[:16]


class Corpus:
    def __init__(self, root: Path, programs: list[list[dict[str, Any]]], pcs: set[int]) -> None:
        self.root = root
        self.programs = programs
        self.pcs = pcs
        self.loaded = (len(programs), len(pcs))  # what earlier runs left
        self._lock = threading.Lock()

    @classmethod
    def open(cls, root: Path) -> Corpus:
        (root / PROGRAMS).mkdir(parents=True, exist_ok=True)
        programs = []
        for path in sorted((root / PROGRAMS).glob("*.json")):
            try:
                programs.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # a file half written by a killed run
        try:
            pcs = set(json.loads((root / COVERAGE).read_text()))
        except (OSError, ValueError):
            pcs = set()
        return cls(root, programs, pcs)

    def add(self, program: list[dict[str, Any]], pcs: Iterable[int]) -> int:
        """Merge the PCs a program ran; keep the program if any was new. Returns how many."""
        with self._lock:
            new = set(pcs) - self.pcs
            if not new:
                return 0
            self.pcs |= new
            self.programs.append(program)
            path = self.root / PROGRAMS / f"{program_digest(program)}.json"
            _write(path, json.dumps(program))
            return len(new)

    def pick(self, rng: random.Random) -> list[dict[str, Any]] | None:
        with self._lock:
            return rng.choice(self.programs) if self.programs else None

    def save(self) -> None:
        with self._lock:
            _write(self.root / COVERAGE, json.dumps(sorted(self.pcs)))


def _write(path: Path, text: str) -> None:
    partial = path.with_suffix(".part")
    partial.write_text(text)
    partial.replace(path)


__all__ = ["Corpus", "program_digest"]
