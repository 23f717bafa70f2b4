# SPDX-License-Identifier: MIT
"""Check the ctypes UAPI mirrors against a kernel's real UAPI headers.

A wrong offset in a ctypes struct does not fail loudly: the kernel reads a neighbouring field
and the test reports a driver bug that is ours. So every layout and constant in `raw/vfio.py`
and `raw/iommufd.py` is compared with what a C compiler makes of the headers:

- one C program is generated that prints sizeof/offsetof of every struct layout valid for the
  headers' kernel version and the value of every constant that exists in that version;
- for macros the Python side says do not exist yet (or any more), it prints whether the header
  defines them, which proves the `SINCE`/`UNTIL` annotations; enum constants cannot be probed
  with `#ifdef`, so their absence is not checked (they are listed in the report instead);
- it is compiled with gcc against the given include dirs, run, and its output compared.

A struct field or constant that does not exist in the headers is a compile error: that surfaces
as `CompileError` with the compiler's output, and usually means a wrong `since`.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from harness.uapi.raw.versions import OLDEST_SUPPORTED, KernelVersion, Layout, kv

# Where gcc finds linux/version.h when no include dir provides one (the host's headers).
SYSTEM_INCLUDE_DIR = Path("/usr/include")

_Aggregate = type[ctypes.Structure] | type[ctypes.Union]
ValueHistory = tuple[tuple[KernelVersion, int], ...]


class LayoutCheckError(RuntimeError):
    """The check itself could not run (not a mismatch: those are in the report)."""


class CompileError(LayoutCheckError):
    """gcc rejected the generated program: a missing header, field or constant."""

    def __init__(self, header_set: HeaderSet, command: Sequence[str], output: str) -> None:
        super().__init__(
            f"compiling the layout probe against {header_set.label} failed "
            f"({' '.join(command)}):\n{output}"
        )
        self.command = list(command)
        self.output = output


# -- Header sets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderSet:
    """A set of kernel UAPI headers: `-I` dirs searched before the host's /usr/include.

    An empty `include_dirs` means the compiler's default headers (the host's linux-libc-dev).
    """

    name: str
    include_dirs: Sequence[Path]
    version: KernelVersion

    @classmethod
    def from_include_dirs(
        cls, name: str, include_dirs: Iterable[str | os.PathLike[str]]
    ) -> HeaderSet:
        dirs = [Path(d) for d in include_dirs]
        return cls(name, dirs, read_kernel_version(dirs))

    @property
    def label(self) -> str:
        return f"{self.name} headers, Linux {self.version}"


_VERSION_PART = re.compile(r"^#define\s+LINUX_VERSION_(MAJOR|PATCHLEVEL|SUBLEVEL)\s+(\d+)", re.M)
_VERSION_CODE = re.compile(r"^#define\s+LINUX_VERSION_CODE\s+(\d+)", re.M)


def parse_version_header(text: str) -> KernelVersion:
    """Read linux/version.h. MAJOR/PATCHLEVEL/SUBLEVEL (5.x+ headers) are preferred: the
    SUBLEVEL inside LINUX_VERSION_CODE saturates at 255 (6.1.300 encodes as 6.1.255)."""
    parts = dict(_VERSION_PART.findall(text))
    if len(parts) == 3:
        return KernelVersion(int(parts["MAJOR"]), int(parts["PATCHLEVEL"]), int(parts["SUBLEVEL"]))
    code = _VERSION_CODE.search(text)
    if code is None:
        raise LayoutCheckError("linux/version.h defines neither LINUX_VERSION_MAJOR nor _CODE")
    return KernelVersion.from_code(int(code[1]))


def read_kernel_version(include_dirs: Sequence[Path]) -> KernelVersion:
    """The version of the first linux/version.h in search order (then the system's)."""
    for directory in [*include_dirs, SYSTEM_INCLUDE_DIR]:
        candidate = directory / "linux" / "version.h"
        if candidate.is_file():
            return parse_version_header(candidate.read_text())
    raise LayoutCheckError(
        f"no linux/version.h in {[str(d) for d in include_dirs]} or the system's"
    )


# -- What the Python side declares -----------------------------------------------------------


def module_constants(module: ModuleType) -> dict[str, int]:
    """The C constants of a raw module: public ints whose name starts with an uppercase letter
    (not `isupper()`: VFIO_TYPE1v2_IOMMU has a lowercase letter)."""
    return {
        name: value
        for name, value in vars(module).items()
        if name[:1].isupper() and isinstance(value, int) and not isinstance(value, bool)
    }


@dataclass(frozen=True)
class UapiSpec:
    """Everything one raw module declares about one header; injectable for tests."""

    header: str  # as #include'd, e.g. "linux/vfio.h"
    header_since: KernelVersion
    layouts: Sequence[Layout]
    constants: Mapping[str, int]
    ioctls: frozenset[str] = frozenset()
    enums: frozenset[str] = frozenset()
    since: Mapping[str, KernelVersion] = field(default_factory=dict)
    until: Mapping[str, KernelVersion] = field(default_factory=dict)
    old_values: Mapping[str, ValueHistory] = field(default_factory=dict)

    @classmethod
    def from_module(
        cls, module: ModuleType, header: str, header_since: KernelVersion = OLDEST_SUPPORTED
    ) -> UapiSpec:
        spec = cls(
            header=header,
            header_since=header_since,
            layouts=list(module.STRUCT_LAYOUTS),
            constants=module_constants(module),
            ioctls=frozenset(module.IOCTLS),
            enums=frozenset(module.ENUM_CONSTANTS),
            since=dict(module.SINCE),
            until=dict(getattr(module, "UNTIL", {})),
            old_values=dict(getattr(module, "OLD_VALUES", {})),
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        """Catch bookkeeping typos: every annotated name must be a bound constant."""
        for table in ("ioctls", "enums", "since", "until", "old_values"):
            unknown = set(getattr(self, table)) - set(self.constants)
            if unknown:
                raise LayoutCheckError(f"{self.header}: {table} names unknown constants {unknown}")
        for layout in self.layouts:
            if not issubclass(layout.struct, ctypes.Structure | ctypes.Union):
                raise LayoutCheckError(f"{layout.c_name}: {layout.struct} is not a ctypes struct")

    def constant_exists(self, name: str, version: KernelVersion) -> bool:
        since = self.since.get(name, self.header_since)
        until = self.until.get(name)
        return since <= version and (until is None or version < until)

    def value_for(self, name: str, version: KernelVersion) -> int:
        """The constant's value in `version`, walking OLD_VALUES (newest change first)."""
        value = self.constants[name]
        for changed_in, older in self.old_values.get(name, ()):
            if version >= changed_in:
                break
            value = older
        return value


def default_specs() -> tuple[UapiSpec, ...]:
    from harness.uapi.raw import iommufd, vfio

    return (
        UapiSpec.from_module(vfio, "linux/vfio.h"),
        UapiSpec.from_module(iommufd, "linux/iommufd.h", kv("6.2")),
    )


# -- The probe program -----------------------------------------------------------------------


def c_members(struct: _Aggregate) -> list[str]:
    """C member names in declaration order; an anonymous union contributes its members
    (ctypes exposes them as attributes of the outer struct, with absolute offsets)."""
    anonymous = set(getattr(struct, "_anonymous_", ()))
    names: list[str] = []
    for entry in struct._fields_:
        name, ctype = entry[0], entry[1]
        if name in anonymous and issubclass(ctype, ctypes.Structure | ctypes.Union):
            names.extend(c_members(ctype))
        else:
            names.append(name)
    return names


def _offset(struct: _Aggregate, member: str) -> int:
    return int(getattr(struct, member).offset)


@dataclass
class _Program:
    """C statements plus what the Python side expects each printed key to say."""

    lines: list[str] = field(default_factory=list)
    expected: dict[str, int] = field(default_factory=dict)
    subjects: dict[str, str] = field(default_factory=dict)  # key -> human-readable subject

    def expect(self, key: str, subject: str, value: int, c_format: str, c_args: str) -> None:
        self.lines.append(f'\tprintf("{key} {c_format}\\n", {c_args});')
        self.expected[key] = value
        self.subjects[key] = subject

    def if_defined(self, name: str, key: str) -> None:
        self.lines += [f"#ifdef {name}", f'\tprintf("{key} 1\\n");', "#endif"]

    def source(self, headers: Sequence[str]) -> str:
        includes = [f"#include <{h}>" for h in ("stddef.h", "stdio.h", *headers)]
        return "\n".join(
            [*includes, "", "int main(void)", "{", *self.lines, "\treturn 0;", "}", ""]
        )


@dataclass
class CheckReport:
    header_set: HeaderSet
    structs: int = 0  # layouts checked
    struct_checks: int = 0  # one per sizeof and one per member offset
    constant_checks: int = 0  # value (+ macro-vs-enum kind) of non-ioctl constants
    ioctl_checks: int = 0  # value of ioctl request numbers
    absence_checks: int = 0  # macros proven absent (since > version or until <= version)
    checked_layouts: list[str] = field(default_factory=list)  # Python class names
    unprobed_enums: list[str] = field(default_factory=list)  # absent enums: no #ifdef probe
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        return (
            f"{self.header_set.label}: {self.structs} structs ({self.struct_checks} size/offset "
            f"checks), {self.ioctl_checks} ioctls, {self.constant_checks} constants, "
            f"{self.absence_checks} absent macros, {len(self.mismatches)} mismatches"
        )


def _add_layout(program: _Program, layout: Layout, report: CheckReport) -> None:
    struct: _Aggregate = layout.struct
    c_type = f"struct {layout.c_name}"
    members = c_members(struct)
    size_key = f"size:{layout.c_name}"
    program.expect(
        size_key, f"{layout.c_name}: size", ctypes.sizeof(struct), "%zu", f"sizeof({c_type})"
    )
    for member in members:
        program.expect(
            f"offset:{layout.c_name}.{member}",
            f"{layout.c_name}.{member}: offset",
            _offset(struct, member),
            "%zu",
            f"offsetof({c_type}, {member})",
        )
    report.structs += 1
    report.struct_checks += 1 + len(members)
    report.checked_layouts.append(struct.__name__)


def _add_constant(program: _Program, spec: UapiSpec, name: str, report: CheckReport) -> None:
    version = report.header_set.version
    # sizeof tells the comparison the C width: (1 << 31) is a negative int in C but the
    # 0x80000000 a __u32 field holds; equal bit patterns at that width are the same constant.
    c_args = f"(long long)({name}), sizeof({name})"
    program.expect(
        f"const:{name}", f"{name}: value", spec.value_for(name, version), "%lld %zu", c_args
    )
    program.if_defined(name, f"macro:{name}")
    if name in spec.ioctls:
        report.ioctl_checks += 1
    else:
        report.constant_checks += 1


def _add_absent(program: _Program, spec: UapiSpec, name: str, report: CheckReport) -> None:
    if name in spec.enums:
        report.unprobed_enums.append(name)
        return
    program.if_defined(name, f"defined:{name}")
    report.absence_checks += 1


def _overlapping_layouts(layouts: Sequence[Layout], version: KernelVersion) -> list[str]:
    seen: dict[str, str] = {}
    problems = []
    for layout in layouts:
        if layout.c_name in seen:
            problems.append(
                f"{layout.c_name}: layouts {seen[layout.c_name]} and {layout.struct.__name__} "
                f"are both valid for {version}"
            )
        seen[layout.c_name] = layout.struct.__name__
    return problems


def build_program(
    header_set: HeaderSet, specs: Sequence[UapiSpec]
) -> tuple[_Program, list[str], CheckReport]:
    """The probe program, the headers it includes, and a report with the counts filled in."""
    version = header_set.version
    program, report, headers = _Program(), CheckReport(header_set), []
    for spec in specs:
        if version < spec.header_since:
            continue  # the header does not exist yet: nothing to include or probe
        headers.append(spec.header)
        valid = [layout for layout in spec.layouts if layout.valid_for(version)]
        report.mismatches += _overlapping_layouts(valid, version)
        for layout in valid:
            _add_layout(program, layout, report)
        for name in spec.constants:
            if spec.constant_exists(name, version):
                _add_constant(program, spec, name, report)
            else:
                _add_absent(program, spec, name, report)
    return program, headers, report


# -- Compile, run, compare -------------------------------------------------------------------


def _compile_and_run(header_set: HeaderSet, source: str, compiler: str) -> str:
    with tempfile.TemporaryDirectory(prefix="uapi-layout-") as tmp:
        c_file, exe = Path(tmp) / "probe.c", Path(tmp) / "probe"
        c_file.write_text(source)
        includes = [arg for d in header_set.include_dirs for arg in ("-I", str(d))]
        command = [compiler, "-std=gnu11", *includes, "-o", str(exe), str(c_file)]
        try:
            built = subprocess.run(command, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise LayoutCheckError(f"no C compiler {compiler!r}: install gcc") from None
        if built.returncode != 0:
            raise CompileError(header_set, command, built.stdout + built.stderr)
        ran = subprocess.run([str(exe)], capture_output=True, text=True, check=False, timeout=60)
        if ran.returncode != 0:
            raise LayoutCheckError(f"layout probe exited {ran.returncode}: {ran.stderr}")
        return ran.stdout


def _parse_output(stdout: str) -> dict[str, list[int]]:
    results: dict[str, list[int]] = {}
    for line in stdout.splitlines():
        key, *values = line.split()
        results[key] = [int(v) for v in values]
    return results


def _same_constant(python: int, c_value: int, c_size: int) -> bool:
    mask = (1 << (8 * c_size)) - 1
    fits = -(1 << (8 * c_size - 1)) <= python <= mask
    return fits and (python & mask) == (c_value & mask)


def _compare(program: _Program, printed: dict[str, list[int]], report: CheckReport) -> None:
    where = f"({report.header_set.label})"
    for key, expected in program.expected.items():
        subject = program.subjects[key]
        if key not in printed:
            report.mismatches.append(f"{subject}: the probe printed nothing {where}")
            continue
        actual = printed[key]
        kind = key.split(":", 1)[0]
        same = _same_constant(expected, *actual) if kind == "const" else expected == actual[0]
        if not same:
            report.mismatches.append(f"{subject} {expected} in Python, {actual[0]} in C {where}")


def _compare_kinds(
    specs: Sequence[UapiSpec], printed: dict[str, list[int]], report: CheckReport
) -> None:
    """A present constant must be a macro unless listed in ENUM_CONSTANTS (and vice versa), or
    the absence checks, which only work for macros, would be silently skipped."""
    where = f"({report.header_set.label})"
    for spec in specs:
        for name in spec.constants:
            if f"const:{name}" not in printed:
                continue
            is_macro = f"macro:{name}" in printed
            if is_macro == (name in spec.enums):
                said = "an enum constant" if name in spec.enums else "a macro"
                report.mismatches.append(f"{name}: Python says {said}, C disagrees {where}")
    for key in printed:
        if key.startswith("defined:"):
            name = key.split(":", 1)[1]
            report.mismatches.append(
                f"{name}: Python says it is absent in {report.header_set.version}, "
                f"but the header defines it {where}"
            )


def check(
    header_set: HeaderSet, specs: Sequence[UapiSpec] | None = None, compiler: str = "gcc"
) -> CheckReport:
    """Compare `specs` (default: raw/vfio.py and raw/iommufd.py) with `header_set`."""
    specs = default_specs() if specs is None else specs
    program, headers, report = build_program(header_set, specs)
    printed = _parse_output(_compile_and_run(header_set, program.source(headers), compiler))
    _compare(program, printed, report)
    _compare_kinds(specs, printed, report)
    return report
