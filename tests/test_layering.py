"""The format layer never imports the catalogue or the wiring (see the package docstring)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lake"


def test_format_layer_imports_neither_stac_nor_flows() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).parts
        if rel[0] in ("stac", "flows"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}" for n in names if n.startswith(("lake.stac", "lake.flows"))
            ]
    assert offenders == []


def test_catalogue_reads_the_lake_without_the_wiring() -> None:
    offenders = []
    for path in (PACKAGE / "stac").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lake.flows"):
                offenders.append(f"{path.name}: {node.module}")
    assert offenders == []
