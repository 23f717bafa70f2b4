# SPDX-License-Identifier: MIT
"""report.html: one run (and optionally its comparison with a base) as one self-contained page:
no script, style or font from anywhere else, so it opens from a CI artifact store offline.

Sections: the run (harness, QEMU, driver, kernels with release, accelerator and commit), the
counts per kernel, the kernel x test matrix with outcome colours (a failure's cell links to its
message and splats below), outcomes per area, the slowest tests, the suite's time per kernel
as an inline SVG bar chart, and, given a comparison, its changes with regressions first.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from html import escape

from harness.report.compare import REGRESSIONS, Comparison
from harness.report.results import OUTCOMES, Results, TestResult

SLOWEST = 15
COLOURS = {
    "passed": "#2e7d32",
    "failed": "#c62828",
    "error": "#8e24aa",
    "skipped": "#9e9e9e",
    "xfailed": "#ef6c00",
    "xpassed": "#1565c0",
}
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.o { color: #fff; text-align: center; font-size: 12px; white-space: nowrap; }
td.num { text-align: right; }
pre { background: #f7f7f7; padding: .5em; white-space: pre-wrap; margin: .2em 0 1em; }
.regression { background: #ffebee; }
.legend span { display: inline-block; padding: 0 6px; margin-right: 4px; color: #fff; }
"""


def render(results: Results, comparison: Comparison | None = None, title: str = "") -> str:
    heading = title or "vfio-harness run"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(heading)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(heading)}</h1>",
        _run_section(results),
        _counts_section(results),
    ]
    if comparison is not None:
        parts.append(_comparison_section(comparison))
    parts += [
        _matrix_section(results),
        _failures_section(results),
        _areas_section(results),
        _slowest_section(results),
        _time_chart(results),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _table(header: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    head = f"<tr>{head}</tr>" if head else ""
    body = []
    for index, row in enumerate(rows):
        css = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        body.append(f"<tr{css}>" + "".join(row) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _cell(text: object, css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f"<td{attribute}>{escape(str(text))}</td>"


def _run_section(results: Results) -> str:
    run = results.run
    facts = [
        ("harness", run.harness),
        ("Python", run.python),
        ("host", run.host),
        ("QEMU", run.qemu or "-"),
        ("driver", run.driver or "-"),
        ("firmware", run.firmware),
        ("started", run.started),
        ("finished", run.finished),
        ("exit status", "-" if run.exit_status is None else str(run.exit_status)),
    ]
    rows = [[_cell(name), _cell(value)] for name, value in facts]
    kernels = _table(
        ["kernel", "release", "accelerator", "commit"],
        [
            [
                _cell(k.choice),
                _cell(k.release or "-"),
                _cell(k.accelerator or "-"),
                _cell(k.commit or "-"),
            ]
            for k in run.kernels
        ],
    )
    return "<h2>Run</h2>" + _table([], rows) + kernels


def _counts_section(results: Results) -> str:
    per_kernel: dict[str, Counter[str]] = defaultdict(Counter)
    for test in results.tests:
        per_kernel[test.kernel][test.outcome] += 1
    rows = []
    for kernel, counts in sorted(per_kernel.items()):
        cells = [_cell(counts[o], "num") for o in OUTCOMES]
        rows.append([_cell(kernel), *cells, _cell(sum(counts.values()), "num")])
    legend = "".join(f'<span style="background:{COLOURS[o]}">{o}</span>' for o in OUTCOMES)
    return (
        "<h2>Outcomes per kernel</h2>"
        + _table(["kernel", *OUTCOMES, "total"], rows)
        + f'<p class="legend">{legend}</p>'
    )


def _failure_anchor(test: TestResult) -> str:
    # Readable, and unique: ids that differ only in punctuation ([a/b], [a-b]) differ here.
    readable = "".join(ch if ch.isalnum() else "-" for ch in f"{test.kernel}-{test.id}")
    digest = hashlib.sha256(f"{test.kernel}\0{test.id}".encode()).hexdigest()[:8]
    return f"f-{readable}-{digest}"


def _matrix_section(results: Results) -> str:
    kernels = results.kernels()
    by_key = results.by_key()
    ids = sorted({test.id for test in results.tests})
    rows = []
    for test_id in ids:
        row = [_cell(test_id)]
        for kernel in kernels:
            test = by_key.get((kernel, test_id))
            if test is None:
                row.append(_cell("", ""))
                continue
            label = escape(test.outcome)
            if test.bad:
                label = f'<a style="color:#fff" href="#{_failure_anchor(test)}">{label}</a>'
            colour = COLOURS.get(test.outcome, "#607d8b")
            title = escape(test.message or test.outcome, quote=True)
            row.append(f'<td class="o" style="background:{colour}" title="{title}">{label}</td>')
        rows.append(row)
    return "<h2>Tests by kernel</h2>" + _table(["test", *kernels], rows)


def _failures_section(results: Results) -> str:
    failed = [t for t in results.tests if t.bad]
    if not failed:
        return "<h2>Failures</h2><p>none</p>"
    parts = [f"<h2>Failures ({len(failed)})</h2>"]
    for test in sorted(failed, key=lambda t: t.key):
        splats = "".join(
            f"<li>{escape(s.kind)} <code>{escape(s.fingerprint)}</code> {escape(s.headline)}</li>"
            for s in test.splats
        )
        what = f"{test.outcome} in {test.when}"
        if test.interrupted:
            what += f", {test.interrupted}"
        parts.append(
            f'<h3 id="{_failure_anchor(test)}">{escape(test.kernel)}: {escape(test.id)}</h3>'
            f"<p>{escape(what)}; severity {escape(test.severity or '-')}; "
            f"{escape(test.iommu_mode or '')}</p><pre>{escape(test.message or '')}</pre>"
            + (f"<ul>{splats}</ul>" if splats else "")
        )
    return "\n".join(parts)


def _areas_section(results: Results) -> str:
    areas: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for test in results.tests:
        areas[test.kernel, test.area or "-"][test.outcome] += 1
    rows = [
        [_cell(kernel), _cell(area)] + [_cell(counts[o], "num") for o in OUTCOMES]
        for (kernel, area), counts in sorted(areas.items())
    ]
    return "<h2>Outcomes per area</h2>" + _table(["kernel", "area", *OUTCOMES], rows)


def _slowest_section(results: Results) -> str:
    slowest = sorted(results.tests, key=lambda t: t.duration_s, reverse=True)[:SLOWEST]
    rows = [
        [_cell(f"{t.duration_s:.2f}", "num"), _cell(t.kernel), _cell(t.id), _cell(t.outcome)]
        for t in slowest
    ]
    return "<h2>Slowest tests</h2>" + _table(["seconds", "kernel", "test", "outcome"], rows)


def _time_chart(results: Results) -> str:
    """The suite's time per kernel (the sum of its tests' durations), as SVG bars."""
    totals: dict[str, float] = defaultdict(float)
    for test in results.tests:
        totals[test.kernel] += test.duration_s
    if not totals:
        return ""
    width, bar, gap, label = 480, 22, 8, 150
    longest = max(totals.values()) or 1.0
    height = len(totals) * (bar + gap) + gap
    shapes = []
    for index, (kernel, seconds) in enumerate(sorted(totals.items())):
        y = gap + index * (bar + gap)
        length = max(1.0, (width - label - 70) * seconds / longest)
        shapes.append(
            f'<text x="0" y="{y + 16}">{escape(kernel)}</text>'
            f'<rect x="{label}" y="{y}" width="{length:.1f}" height="{bar}" fill="#1565c0">'
            f"<title>{seconds:.1f} s</title></rect>"
            f'<text x="{label + length + 6:.1f}" y="{y + 16}">{seconds:.0f} s</text>'
        )
    return (
        "<h2>Suite time per kernel</h2>"
        f'<svg role="img" aria-label="suite time per kernel" width="{width}" height="{height}" '
        f'font-size="13" xmlns="http://www.w3.org/2000/svg">{"".join(shapes)}</svg>'
    )


def _comparison_section(comparison: Comparison) -> str:
    counts = comparison.counts()
    summary = ", ".join(f"{counts[k]} {k}" for k in counts)
    rows, classes = [], []
    for change in comparison.changes:
        states = (change.base or "-", change.new or "-")
        rows.append([_cell(change.kind), _cell(change.kernel), _cell(change.test),
                     _cell(states[0]), _cell(states[1]), _cell(change.detail)])  # fmt: skip
        classes.append("regression" if change.kind in REGRESSIONS else "")
    table = (
        _table(["change", "kernel", "test", "base", "new", "detail"], rows, classes)
        if rows
        else "<p>no change</p>"
    )
    return (
        f"<h2>Compared with {escape(comparison.base_label)}</h2>"
        f"<p>{len(comparison.regressions)} regressions; {escape(summary)}</p>{table}"
    )


__all__ = ["COLOURS", "render"]
