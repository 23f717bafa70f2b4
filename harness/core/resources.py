# SPDX-License-Identifier: MIT
"""Where the harness's non-Python parts are: the conformance suite, our driver's C source
(kmod/) and the image recipes (vm_images/).

    suite = SUITE.locate().path        # .../tests/uapi
    KMOD.locate().origin               # "checkout", "package" or "$HARNESS_KMOD_SRC"

Each is looked for, in order:
  1. its environment variable (HARNESS_SUITE, HARNESS_KMOD_SRC, HARNESS_VM_IMAGES), which is
     authoritative: a variable naming the wrong directory is an error, not a fallback;
  2. the copy inside the installed package (harness/_bundle/, written by setup.py into
     wheels and sdists only, so a source checkout or an editable install never has one);
  3. the source checkout the harness is imported from (the directory above harness/).
The bundle keeps the checkout's layout (tests/uapi, kmod, vm_images, beside a pytest.ini), so
test ids, reports and module cache keys are the same from a wheel as from a checkout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # harness/
BUNDLE_DIR = PACKAGE_DIR / "_bundle"  # what setup.py packs; see its docstring
CHECKOUT_DIR = PACKAGE_DIR.parent


class ResourceNotFoundError(RuntimeError):
    """A resource is nowhere; the message says where it was looked for and what to do."""


@dataclass(frozen=True)
class Located:
    path: Path
    origin: str  # "$VARIABLE", "package" or "checkout"


@dataclass(frozen=True)
class Resource:
    what: str  # for messages: "the conformance suite"
    env: str
    relative: str  # below the checkout and the bundle
    markers: tuple[str, ...] = ()  # a real copy has one of these files (none: a directory)

    def holds(self, path: Path) -> bool:
        if not self.markers:
            return path.is_dir()
        return any((path / marker).is_file() for marker in self.markers)

    def path(self, error: type[Exception] = RuntimeError) -> Path:
        """Where it is; its absence raised as `error` (the caller's layer's error type)."""
        try:
            return self.locate().path
        except ResourceNotFoundError as exc:
            raise error(str(exc)) from None

    def locate(self) -> Located:
        explicit = os.environ.get(self.env)
        if explicit:
            path = Path(explicit).expanduser().resolve()
            if not self.holds(path):
                has = f"no {' or '.join(self.markers)} in it" if self.markers else "no directory"
                raise ResourceNotFoundError(
                    f"${self.env} is {explicit}, which is not {self.what} ({has}): point it "
                    f"at a copy of {self.relative}/ or unset it"
                )
            return Located(path, f"${self.env}")
        for origin, root in (("package", BUNDLE_DIR), ("checkout", CHECKOUT_DIR)):
            if self.holds(root / self.relative):
                return Located(root / self.relative, origin)
        raise ResourceNotFoundError(
            f"{self.what} ({self.relative}/) is neither in the installed package nor in a "
            f"checkout around it ({CHECKOUT_DIR}): reinstall vfio-harness from a wheel or an "
            f"sdist, or set {self.env}"
        )


SUITE = Resource("the conformance suite", "HARNESS_SUITE", "tests/uapi", ("conftest.py",))
KMOD = Resource("a driver's source", "HARNESS_KMOD_SRC", "kmod", ("Kbuild", "Makefile"))
RECIPES = Resource("a directory of image recipes", "HARNESS_VM_IMAGES", "vm_images")
RESOURCES = {"suite": SUITE, "kmod": KMOD, "recipes": RECIPES}
