# SPDX-License-Identifier: MIT
"""Find the host's Debian mirror in its apt configuration.

apt's sources come in two formats, and both are read here:

* one-line (`*.list`):  ``deb [signed-by=/k.gpg arch=amd64] http://mirror/debian bookworm main``
* deb822 (`*.sources``): stanzas of ``Types:``, ``URIs:``, ``Suites:``, ``Components:`` ...

The mirror is the first ``deb`` source that serves a plain Debian release (the host's codename
or a name such as trixie, sid, testing) with component main. Security archives and third-party
repositories never qualify, so they can sit anywhere in the configuration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

MIRROR_ENV = "HARNESS_DEBIAN_MIRROR"
DEFAULT_APT_ROOT = Path("/etc/apt")
DEFAULT_OS_RELEASE = Path("/etc/os-release")
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

DEBIAN_CODENAMES = frozenset(
    {
        "buzz", "rex", "bo", "hamm", "slink", "potato", "woody", "sarge", "etch", "lenny",
        "squeeze", "wheezy", "jessie", "stretch", "buster", "bullseye", "bookworm", "trixie",
        "forky", "duke", "sid",
    }
)  # fmt: skip
DEBIAN_ALIASES = frozenset(
    {"oldoldstable", "oldstable", "stable", "testing", "unstable", "experimental"}
)
DEBIAN_SUITES = DEBIAN_CODENAMES | DEBIAN_ALIASES

# apt itself ignores files in sources.list.d whose names have other characters.
_SOURCES_FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.(list|sources)$")
_ONE_LINE_ENTRY = re.compile(
    r"^(?P<type>\S+)\s+(?:\[(?P<options>[^\]]*)\]\s*)?(?P<uri>\S+)\s+(?P<suite>\S+)\s*(?P<components>.*)$"
)


class MirrorNotFoundError(LookupError):
    """No usable Debian mirror in the apt configuration and no override set."""


@dataclass(frozen=True)
class AptSource:
    """One entry of apt's sources, whichever format it was written in."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None
    enabled: bool
    origin: str  # "file:line", for messages


@dataclass(frozen=True)
class DebianMirror:
    """Where to fetch Debian from, and which keyring verifies it."""

    uri: str
    keyring: Path


def parse_one_line_sources(text: str, origin: str = "<sources.list>") -> list[AptSource]:
    """Entries of a one-line-style file (sources.list, *.list); malformed lines are skipped."""
    sources = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.split("#", 1)[0].strip()
        match = _ONE_LINE_ENTRY.match(line)
        if not match:
            continue
        options = _one_line_options(match["options"] or "")
        sources.append(
            AptSource(
                types=(match["type"],),
                uris=(match["uri"],),
                suites=(match["suite"],),
                components=tuple(match["components"].split()),
                signed_by=options.get("signed-by"),
                enabled=True,
                origin=f"{origin}:{number}",
            )
        )
    return sources


def _one_line_options(text: str) -> dict[str, str]:
    """`arch=amd64 signed-by=/k.gpg` -> {'arch': 'amd64', 'signed-by': '/k.gpg'}."""
    options = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if sep:
            options[key.lower()] = value
    return options


def parse_deb822_sources(text: str, origin: str = "<sources>") -> list[AptSource]:
    """Entries of a deb822-style file (*.sources): one per stanza."""
    sources = []
    for first_line, fields in _deb822_stanzas(text):
        sources.append(
            AptSource(
                types=tuple(fields.get("types", "").split()),
                uris=tuple(fields.get("uris", "").split()),
                suites=tuple(fields.get("suites", "").split()),
                components=tuple(fields.get("components", "").split()),
                signed_by=fields.get("signed-by") or None,
                enabled=fields.get("enabled", "yes").strip().lower() != "no",
                origin=f"{origin}:{first_line}",
            )
        )
    return sources


def _deb822_stanzas(text: str) -> Iterable[tuple[int, dict[str, str]]]:
    """(line number, {lower-cased field: value}) per stanza; continuation lines are kept."""
    fields: dict[str, str] = {}
    first_line = 0
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield first_line, fields
            fields, current = {}, ""
            continue
        if line[0] in " \t":
            if current:
                fields[current] += "\n" + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        if not fields:
            first_line = number
        current = name.strip().lower()
        fields[current] = value.strip()
    if fields:
        yield first_line, fields


def read_apt_sources(apt_root: Path = DEFAULT_APT_ROOT) -> list[AptSource]:
    """All entries, in apt's order: sources.list, then sources.list.d/ sorted by name."""
    files = [apt_root / "sources.list"]
    parts = apt_root / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if _SOURCES_FILE_NAME.match(p.name))
    sources: list[AptSource] = []
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".sources":
            sources += parse_deb822_sources(text, str(path))
        else:
            sources += parse_one_line_sources(text, str(path))
    return sources


def host_codename(os_release: Path = DEFAULT_OS_RELEASE) -> str | None:
    """VERSION_CODENAME from os-release, or None if the file or the field is missing."""
    try:
        text = os_release.read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "VERSION_CODENAME":
            return value.strip().strip("\"'") or None
    return None


def is_security_suite(suite: str) -> bool:
    # "bookworm-security", or "buster/updates" on the old security archive layout.
    return suite.endswith("-security") or suite.endswith("/updates")


def is_debian_mirror_source(source: AptSource, codename: str | None) -> bool:
    """A binary, enabled entry serving a plain Debian release with component main."""
    plain = DEBIAN_SUITES | ({codename} if codename else set())
    return (
        source.enabled
        and "deb" in source.types
        and "main" in source.components
        and any(suite in plain for suite in source.suites)
        and not any(is_security_suite(suite) for suite in source.suites)
        and any(_is_fetchable(uri) for uri in source.uris)
    )


def _is_fetchable(uri: str) -> bool:
    return not uri.startswith("cdrom:")


def keyring_of(source: AptSource) -> Path:
    """The first keyring file named by Signed-By, else Debian's archive keyring.

    Signed-By may also hold fingerprints or an inline key block; neither is a file we can
    hand to another sources.list, and a Debian mirror is signed by Debian's keys anyway.
    """
    if source.signed_by:
        for candidate in source.signed_by.replace(",", " ").split():
            if candidate.startswith("/"):
                return Path(candidate)
    return DEFAULT_KEYRING


def normalize_uri(uri: str) -> str:
    return uri.strip().rstrip("/")


def find_debian_mirror(
    apt_root: Path = DEFAULT_APT_ROOT, os_release: Path = DEFAULT_OS_RELEASE
) -> DebianMirror:
    """The Debian mirror configured for apt under `apt_root`; MirrorNotFoundError if none is."""
    codename = host_codename(os_release)
    for source in read_apt_sources(apt_root):
        if is_debian_mirror_source(source, codename):
            uri = next(u for u in source.uris if _is_fetchable(u))
            return DebianMirror(uri=normalize_uri(uri), keyring=keyring_of(source))
    raise MirrorNotFoundError(_not_found_message(apt_root, codename))


def _not_found_message(apt_root: Path, codename: str | None) -> str:
    release = f"'{codename}' or another Debian release" if codename else "a Debian release"
    return (
        f"no Debian mirror found in the apt configuration under {apt_root} (looked for an "
        f"enabled 'deb' entry for {release} with component 'main' in sources.list and "
        f"sources.list.d/*.list|*.sources). Set {MIRROR_ENV} to a Debian mirror URL, "
        f"e.g. {MIRROR_ENV}=http://<your-mirror>/debian"
    )


def debian_mirror(
    mirror: str | None = None,
    *,
    apt_root: Path = DEFAULT_APT_ROOT,
    os_release: Path = DEFAULT_OS_RELEASE,
    environ: Mapping[str, str] | None = None,
) -> DebianMirror:
    """The mirror to use: the `mirror` argument, else $HARNESS_DEBIAN_MIRROR, else apt's.

    An explicit mirror is verified with Debian's archive keyring.
    """
    env = os.environ if environ is None else environ
    explicit = mirror or env.get(MIRROR_ENV, "").strip()
    if explicit:
        return DebianMirror(uri=normalize_uri(explicit), keyring=DEFAULT_KEYRING)
    return find_debian_mirror(apt_root, os_release)
