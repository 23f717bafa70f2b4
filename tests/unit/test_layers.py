# SPDX-License-Identifier: MIT
"""The layers of README's layout, checked: a module imports only from its own layer and the
layers listed before it. The order is read from the README, so the map and the code agree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
PACKAGE = CHECKOUT / "harness"


def layer_order() -> list[str]:
    """The README's chain: "The layers ... `core` → `uapi` → ... → `commands`"."""
    readme = (CHECKOUT / "README.md").read_text()
    chain = re.search(
        r"The layers depend only on the ones before them: (.*?)\.\s*\n\n", readme, re.S
    )
    assert chain, "README: no 'The layers depend only on the ones before them:' paragraph"
    return re.findall(r"`(\w+)`", chain.group(1).split(". ")[0])


def layer_of(module: str) -> str:
    """harness.kernel.build -> kernel; harness/cli.py and friends -> commands."""
    parts = module.split(".")
    if len(parts) == 2 and parts[1] in ("cli", "cli_errors"):
        return "commands"
    return parts[1] if len(parts) > 1 else "core"


def harness_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "harness" or n.startswith("harness.")]
    return found


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(CHECKOUT).with_suffix("")
        if "_bundle" in relative.parts:
            continue
        found.append((".".join(relative.parts).removesuffix(".__init__"), path))
    return found


def test_every_folder_of_the_package_is_a_listed_layer() -> None:
    order = layer_order()
    folders = {layer_of(module) for module, _ in modules() if module != "harness"}
    assert folders <= set(order), (
        f"folders missing from README's layer chain: {folders - set(order)}"
    )
    assert set(order) <= folders, f"layers in README that do not exist: {set(order) - folders}"


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    order = layer_order()
    rank = {layer: i for i, layer in enumerate(order)}
    wrong = []
    for module, path in modules():
        own = layer_of(module)
        for line, imported in harness_imports(path):
            if imported == "harness":
                continue
            if rank[layer_of(imported)] > rank[own]:
                wrong.append(f"{path.relative_to(CHECKOUT)}:{line}: {own} imports {imported}")
    assert not wrong, "imports from a layer above:\n" + "\n".join(wrong)
