# SPDX-License-Identifier: MIT
"""Guest image recipes: parsing, validation errors, and the content cache key."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.images import recipe as recipe_module
from harness.images.build import image_key
from harness.images.recipe import Recipe, RecipeError, load_recipe, load_recipes

RECIPE_DIR = Path(__file__).resolve().parents[2] / "vm_images"

GOOD = """\
# a comment
name = "guest"
suite = "bookworm"
kernel_package = "linux-image-amd64"
packages = ["busybox-static", "kmod", "iproute2", "dropbear-bin", "python3"]
path_exclude = ["/lib/modules/*/kernel/sound/*"]
disk_headroom_mib = 256

[build_env]
packages = ["gcc", "make", "linux-headers-amd64"]
"""


def write(tmp_path: Path, text: str, name: str = "guest") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_recipe_parses(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, GOOD))
    assert recipe.name == "guest"
    assert recipe.suite == "bookworm"
    assert recipe.packages[0] == "busybox-static"
    assert recipe.ssh_server == "dropbear"
    assert recipe.variant == "minbase"
    assert recipe.disk_headroom_mib == 256
    assert recipe.build_env.packages == ("gcc", "make", "linux-headers-amd64")
    assert recipe.all_packages()[0] == "linux-image-amd64"


@pytest.mark.parametrize("name", ["bookworm", "trixie", "sid"])
def test_shipped_recipes_are_valid(name: str) -> None:
    recipe = load_recipes(RECIPE_DIR)[name]
    assert recipe.suite == name
    for needed in ("python3", "python3-pytest", "pciutils", "dropbear-bin", "kmod"):
        assert needed in recipe.packages
    assert "linux-headers-amd64" in recipe.build_env.packages


def test_shipped_recipes_have_distinct_keys() -> None:
    keys = {image_key(r) for r in load_recipes(RECIPE_DIR).values()}
    assert len(keys) == 3


def test_the_nested_recipe_is_bookworm_plus_qemu_and_venv() -> None:
    # In a subdirectory, so that `--kernel all` (every top-level recipe) does not include it.
    nested = load_recipes(RECIPE_DIR / "nested")["bookworm-nested"]
    bookworm = load_recipes(RECIPE_DIR)["bookworm"]
    assert nested.suite == "bookworm"
    assert nested.kernel_package == bookworm.kernel_package
    assert nested.packages == (*bookworm.packages, "qemu-system-x86", "python3-venv")
    assert nested.path_exclude == bookworm.path_exclude
    # The same module build chroot: the vendor module builds once for both images.
    assert nested.build_env == bookworm.build_env
    assert image_key(nested) != image_key(bookworm)


@pytest.mark.parametrize(
    ("old", "new", "field", "says"),
    [
        ('suite = "bookworm"\n', "", "suite", "is missing"),
        ('suite = "bookworm"', "suite = 12", "suite", "must be a string"),
        ('suite = "bookworm"', 'suite = "Bad Suite"', "suite", "does not match"),
        ('name = "guest"', 'name = "other"', "name", "guest.toml"),
        ('"kmod", ', "", "packages", "kmod"),
        ('"python3"]', '"python3", "Not_A_Package"]', "packages", "Not_A_Package"),
        ('"python3"]', '"python3", "kmod"]', "packages", "twice"),
        ("disk_headroom_mib = 256", "disk_headroom_mib = -1", "disk_headroom_mib", ">= 0"),
        ("disk_headroom_mib = 256", "disk_headroom_mib = true", "disk_headroom_mib", ">= 0"),
        ("disk_headroom_mib = 256", 'ssh_server = "openssh"', "ssh_server", "dropbear"),
        ("disk_headroom_mib = 256", 'colour = "blue"', "colour", "unknown field"),
        (
            'packages = ["gcc", "make", "linux-headers-amd64"]',
            "packages = []",
            "build_env.packages",
            "at least one",
        ),
        ("[build_env]", "[build_env]\nflavour = 1", "build_env.flavour", "unknown field"),
        ('path_exclude = ["/lib', 'path_exclude = [1, "/lib', "path_exclude", "list of strings"),
        ("disk_headroom_mib = 256", 'init = "openrc"', "init", "harness, systemd"),
        ("disk_headroom_mib = 256", 'init = "systemd"', "packages", "systemd-sysv"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, old: str, new: str, field: str, says: str) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"field '{field}" in message
    assert says in message


def test_missing_build_env_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.split("[build_env]", maxsplit=1)[0])
    with pytest.raises(RecipeError, match=r"field 'build_env': is missing"):
        load_recipe(path)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"guest\.toml: not valid TOML"):
        load_recipe(write(tmp_path, "name = \n"))
    with pytest.raises(RecipeError, match="cannot read the recipe"):
        load_recipe(tmp_path / "absent.toml")
    with pytest.raises(RecipeError, match=r"no \*\.toml recipes"):
        load_recipes(tmp_path / "empty")


def test_key_ignores_comments_whitespace_and_order(tmp_path: Path) -> None:
    base = load_recipe(write(tmp_path, GOOD)).cache_key()
    # Top-level keys reversed, comments and blank lines added, the list re-wrapped.
    lines = GOOD.split("[build_env]", maxsplit=1)[0].strip().splitlines()
    shuffled = "\n".join(reversed(lines)) + "\n   # more comments\n\n[build_env]\n"
    shuffled += '  packages = [ "gcc",\n "make", "linux-headers-amd64" ]  # same\n'
    other = tmp_path / "other"
    other.mkdir()
    assert load_recipe(write(other, shuffled)).cache_key() == base


def test_the_default_init_is_left_out_of_the_key(tmp_path: Path) -> None:
    # Images made before recipes had an init field keep their key (and their cache entries).
    base = load_recipe(write(tmp_path, GOOD))
    assert base.init == "harness"
    stated = tmp_path / "stated"
    stated.mkdir()
    explicit = load_recipe(
        write(stated, GOOD.replace("disk_headroom_mib", 'init = "harness"\ndisk_headroom_mib'))
    )
    assert explicit.cache_key() == base.cache_key()
    assert "init" not in base.content()


def test_the_libvirt_recipe_runs_systemd_on_trixie() -> None:
    libvirt = load_recipes(RECIPE_DIR / "nested")["trixie-libvirt"]
    trixie = load_recipes(RECIPE_DIR)["trixie"]
    assert libvirt.init == "systemd"
    assert (libvirt.suite, libvirt.kernel_package) == (trixie.suite, trixie.kernel_package)
    for needed in ("systemd-sysv", "udev", "qemu-system-x86", "libvirt-daemon-system", "mdevctl"):
        assert needed in libvirt.packages
    # The same module build chroot as trixie: the vendor module builds once for both.
    assert libvirt.build_env == trixie.build_env


def test_key_is_stable() -> None:
    recipe = Recipe(
        name="x",
        suite="bookworm",
        kernel_package="linux-image-amd64",
        packages=("kmod",),
        build_env=recipe_module.BuildEnvSpec(packages=("gcc",)),
    )
    # Pinned: if this changes, every cached image is rebuilt. That must be on purpose (bump
    # BUILDER_VERSION and update the value), never a side effect of refactoring the dataclass.
    assert recipe.cache_key() == "x-2d19c0f52cc2d11a8f2d"
    assert recipe.cache_key(b"") == recipe.cache_key()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('suite = "bookworm"', 'suite = "trixie"'),
        ('"python3"]', '"python3", "strace"]'),
        ('"kmod", "iproute2"', '"iproute2", "kmod"'),  # package order is part of the recipe
        ('kernel_package = "linux-image-amd64"', 'kernel_package = "linux-image-rt-amd64"'),
        ("disk_headroom_mib = 256", "disk_headroom_mib = 257"),
        ('sound/*"]', 'sound/*", "/x"]'),
        ("disk_headroom_mib = 256", 'description = "now described"\ndisk_headroom_mib = 256'),
        ('"python3"]', '"python3", "systemd-sysv"]\ninit = "systemd"'),
    ],
)
def test_any_field_change_changes_the_key(tmp_path: Path, old: str, new: str) -> None:
    base = load_recipe(write(tmp_path, GOOD)).cache_key()
    assert old in GOOD
    changed = tmp_path / "changed"
    changed.mkdir()
    assert load_recipe(write(changed, GOOD.replace(old, new, 1))).cache_key() != base


def test_build_env_is_not_part_of_the_image_key(tmp_path: Path) -> None:
    """The build chroot has its own key: changing its packages must not rebuild the image."""
    base = load_recipe(write(tmp_path, GOOD)).cache_key()
    changed = tmp_path / "changed"
    changed.mkdir()
    edited = GOOD.replace('"make", "linux', '"make", "bc", "linux', 1)
    assert edited != GOOD
    assert load_recipe(write(changed, edited)).cache_key() == base


def test_builder_version_and_extra_change_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = load_recipe(write(tmp_path, GOOD))
    base = recipe.cache_key()
    assert recipe.cache_key(b"other init") != base
    monkeypatch.setattr(recipe_module, "BUILDER_VERSION", recipe_module.BUILDER_VERSION + 1)
    assert recipe.cache_key() != base


def test_source_path_is_not_part_of_the_key(tmp_path: Path) -> None:
    first = load_recipe(write(tmp_path, GOOD))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert load_recipe(write(elsewhere, GOOD)).cache_key() == first.cache_key()


def test_every_recipe_names_its_esp_loaders_without_changing_its_image_key() -> None:
    for recipe in load_recipes(RECIPE_DIR).values():
        assert recipe.esp.shim == "shim-signed", recipe.name
        assert recipe.esp.grub == "grub-efi-amd64-signed", recipe.name
        assert "esp" not in recipe.content(), "the ESP is a cache entry of its own"
