# SPDX-License-Identifier: MIT
"""Guest image recipes: one small TOML file per image under vm_images/, parsed and validated.

A recipe says which Debian suite to bootstrap, which kernel package to install, which packages
the guest needs, which files dpkg may leave out, and (declared only, built later) the build
chroot that provides the suite's compiler and kernel headers for out-of-tree modules.

The cache key of a recipe is a hash of its *parsed* content (canonical JSON), the builder's
version and the guest init files: comments, whitespace and key order in the TOML file do not
change it; any field value does.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Bump when the builder changes what it produces for the same recipe.
BUILDER_VERSION = 2

# The guest init needs these; a recipe must list them so it says what the image holds.
REQUIRED_PACKAGES: Mapping[str, str] = {
    "busybox-static": "the initrd's shell and switch_root, and the guest's poweroff",
    "kmod": "modprobe/depmod for the VFIO modules",
    "iproute2": "the guest's static network set-up",
    "dropbear-bin": 'the SSH server (ssh_server = "dropbear")',
}
SSH_SERVERS = ("dropbear",)
# PID 1: the harness's own shell init (small, boots fast), or systemd for guests that run
# daemons the way a host does (libvirt, mdevctl's udev rules: vm_images/nested/).
INITS = ("harness", "systemd")
DEFAULT_INIT = "harness"
VARIANTS = ("minbase",)
DEFAULT_HEADROOM_MIB = 512

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
SUITE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
PACKAGE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


class RecipeError(ValueError):
    """A recipe file is missing, unreadable or has a bad field; the message names both."""

    def __init__(self, path: Path, field_name: str | None, problem: str) -> None:
        self.path = path
        self.field_name = field_name
        where = f"{path}: field '{field_name}'" if field_name else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class BuildEnvSpec:
    """The chroot that builds out-of-tree modules for this image's kernel (declared only)."""

    packages: tuple[str, ...]
    variant: str = "minbase"


@dataclass(frozen=True)
class EspSpec:
    """The signed boot loaders a UEFI guest's EFI system partition gets, as packages of the
    image's suite (harness.firmware knows where each keeps its file). Not part of the image's
    key: the ESP is a cache entry of its own, keyed by the loaders' contents."""

    shim: str = "shim-signed"
    mok_manager: str = "shim-helpers-amd64-signed"
    grub: str = "grub-efi-amd64-signed"


@dataclass(frozen=True)
class Recipe:
    name: str
    suite: str
    kernel_package: str
    packages: tuple[str, ...]
    build_env: BuildEnvSpec
    description: str = ""
    ssh_server: str = "dropbear"
    variant: str = "minbase"
    path_exclude: tuple[str, ...] = ()
    disk_headroom_mib: int = DEFAULT_HEADROOM_MIB
    esp: EspSpec = field(default_factory=EspSpec)
    init: str = DEFAULT_INIT
    source: Path | None = field(default=None, compare=False)

    def content(self) -> dict[str, Any]:
        """Every field that shapes the image, as plain data. Neither the file's path, nor
        [build_env] (the build chroot has its own cache key: harness/kmod), nor [esp] is one."""
        data = asdict(self)
        data.pop("source")
        data.pop("build_env")
        data.pop("esp")
        if data["init"] == DEFAULT_INIT:
            # Left out so that the images made before the field existed keep their key.
            data.pop("init")
        return data

    def cache_key(self, extra: bytes = b"") -> str:
        """Stable across formatting; changes with any field, BUILDER_VERSION or `extra`."""
        canonical = json.dumps(
            {"builder": BUILDER_VERSION, "recipe": self.content()},
            sort_keys=True,
            separators=(",", ":"),
        )
        digest = hashlib.sha256(canonical.encode())
        digest.update(b"\0")
        digest.update(extra)
        return f"{self.name}-{digest.hexdigest()[:20]}"

    def all_packages(self) -> tuple[str, ...]:
        """What mmdebstrap installs: the kernel package, then the recipe's packages."""
        return (self.kernel_package, *(p for p in self.packages if p != self.kernel_package))


_ESP_FIELDS = {"shim", "mok_manager", "grub"}
_TOP_FIELDS = {
    "name",
    "description",
    "suite",
    "kernel_package",
    "packages",
    "ssh_server",
    "variant",
    "path_exclude",
    "disk_headroom_mib",
    "build_env",
    "esp",
    "init",
}
_BUILD_ENV_FIELDS = {"packages", "variant"}


def load_recipe(path: Path) -> Recipe:
    """Read and validate one recipe file; RecipeError says which file and field is wrong."""
    return parse_recipe(read_toml(path, "the recipe"), path)


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML table of a recipe file (`what`: "the recipe", "the kernel recipe")."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RecipeError(path, None, f"cannot read {what}: {err.strerror}") from err
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(path, None, f"not valid TOML: {err}") from err


def load_recipes(directory: Path) -> dict[str, Recipe]:
    """Every *.toml recipe in `directory`, by name."""
    recipes = [load_recipe(p) for p in sorted(directory.glob("*.toml"))]
    if not recipes:
        raise RecipeError(directory, None, "no *.toml recipes in this directory")
    return {r.name: r for r in recipes}


def parse_recipe(data: Mapping[str, Any], path: Path) -> Recipe:
    reader = FieldReader(data, path, "")
    reader.reject_unknown(_TOP_FIELDS)
    name = reader.text("name", pattern=NAME_PATTERN)
    if name != path.stem:
        raise RecipeError(path, "name", f"is {name!r} but the file is {path.name}: make them match")
    packages = reader.packages("packages")
    ssh_server = reader.choice("ssh_server", SSH_SERVERS, default="dropbear")
    missing = [p for p in REQUIRED_PACKAGES if p not in packages]
    if missing:
        why = "; ".join(f"{p}: {REQUIRED_PACKAGES[p]}" for p in missing)
        raise RecipeError(path, "packages", f"must include {', '.join(missing)} ({why})")
    init = reader.choice("init", INITS, default=DEFAULT_INIT)
    if init == "systemd" and "systemd-sysv" not in packages:
        raise RecipeError(path, "packages", 'must include systemd-sysv when init = "systemd"')
    headroom = reader.integer("disk_headroom_mib", default=DEFAULT_HEADROOM_MIB, low=0)
    env_table = reader.table("build_env")
    env_reader = FieldReader(env_table, path, "build_env.")
    env_reader.reject_unknown(_BUILD_ENV_FIELDS)
    build_env = BuildEnvSpec(
        packages=env_reader.packages("packages"),
        variant=env_reader.choice("variant", VARIANTS, default="minbase"),
    )
    esp_reader = FieldReader(reader.table("esp", optional=True), path, "esp.")
    esp_reader.reject_unknown(_ESP_FIELDS)
    default_esp = EspSpec()
    esp = EspSpec(
        **{
            role: esp_reader.text(role, pattern=PACKAGE_PATTERN, default=getattr(default_esp, role))
            for role in _ESP_FIELDS
        }
    )
    return Recipe(
        name=name,
        description=reader.text("description", default=""),
        suite=reader.text("suite", pattern=SUITE_PATTERN),
        kernel_package=reader.text("kernel_package", pattern=PACKAGE_PATTERN),
        packages=packages,
        ssh_server=ssh_server,
        variant=reader.choice("variant", VARIANTS, default="minbase"),
        path_exclude=reader.strings("path_exclude", default=()),
        disk_headroom_mib=headroom,
        build_env=build_env,
        esp=esp,
        init=init,
        source=path,
    )


class FieldReader:
    """Typed access to one TOML table, raising RecipeError with the dotted field name (image
    recipes here, kernel recipes in harness.kernel.recipe)."""

    def __init__(self, data: Mapping[str, Any], path: Path, prefix: str) -> None:
        self.data = data
        self.path = path
        self.prefix = prefix

    def _error(self, key: str, problem: str) -> RecipeError:
        return RecipeError(self.path, self.prefix + key, problem)

    def reject_unknown(self, known: set[str]) -> None:
        for key in self.data:
            if key not in known:
                raise self._error(key, f"unknown field; known: {', '.join(sorted(known))}")

    def _get(self, key: str, default: Any) -> Any:
        if key not in self.data:
            if default is None:
                raise self._error(key, "is missing")
            return default
        return self.data[key]

    def text(
        self, key: str, *, pattern: re.Pattern[str] | None = None, default: str | None = None
    ) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self._error(key, f"must be a string, not {type(value).__name__}")
        if pattern is not None and not pattern.match(value):
            raise self._error(key, f"{value!r} does not match {pattern.pattern}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], *, default: str) -> str:
        value = self.text(key, default=default)
        if value not in allowed:
            raise self._error(key, f"{value!r} is not supported; use one of {', '.join(allowed)}")
        return value

    def integer(self, key: str, *, default: int, low: int) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self._error(key, f"must be an integer >= {low}, not {value!r}")
        return value

    def strings(self, key: str, *, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        value = self._get(key, default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self._error(key, "must be a list of strings")
        return tuple(value)

    def packages(self, key: str) -> tuple[str, ...]:
        value = self.strings(key)
        if not value:
            raise self._error(key, "must list at least one package")
        for package in value:
            if not PACKAGE_PATTERN.match(package):
                raise self._error(key, f"{package!r} is not a Debian package name")
        if len(set(value)) != len(value):
            raise self._error(key, "lists a package twice")
        return value

    def table(self, key: str, *, optional: bool = False) -> Mapping[str, Any]:
        """The sub-table `key`; an empty one when it is absent and `optional`."""
        value = self._get(key, {} if optional else None)
        if not isinstance(value, dict):
            raise self._error(key, f"must be a table ([{self.prefix}{key}])")
        return value
