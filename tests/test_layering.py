"""The package's houses and what each may import (see the package docstring and README)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
PACKAGE = PROJECT / "src" / "lake"
SHARED = (
    "lake.errors",
    "lake.spec",
    "lake.storage",
    "lake.report",
    "lake.registry",
    "lake.sourcefiles",
    "lake.lease",
    "lake.specparts",
)
# House -> the houses it may import (besides itself and the shared modules).
ALLOWED: dict[str, tuple[str, ...]] = {
    "shared": (),
    "cubes": (),
    "tables": (),
    "stac": ("lake.cubes", "lake.tables"),
    "flows": ("lake.cubes", "lake.tables", "lake.stac"),
    "read": ("lake.cubes", "lake.tables"),
    "api": ("lake.cubes", "lake.tables", "lake.stac", "lake.flows", "lake.read"),
    "cli": (
        "lake.api",
        "lake.cubes",
        "lake.tables",
        "lake.stac",
        "lake.flows",
        "lake.read",
        "lake.demo",
        "lake.samples",
        "lake.serve",
    ),
    "demo": ("lake.samples",),
    "samples": (),
    "serve": (),
}


def _house(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    name = rel.parts[0].removesuffix(".py")
    if f"lake.{name}" in SHARED or name == "__init__":
        return "shared"
    return name


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            if node.module == "lake":
                names += [f"lake.{a.name}" for a in node.names]
    return names


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_each_house_imports_only_what_it_may() -> None:
    offenders = []
    for path in _modules():
        house = _house(path)
        own = "lake" if house == "shared" else f"lake.{house}"
        allowed = (*SHARED, own, *ALLOWED[house])
        for name in _imports(path):
            if name == "lake" or not name.startswith("lake."):
                continue
            if not any(name == a or name.startswith(a + ".") for a in allowed):
                offenders.append(f"{path.relative_to(PACKAGE)} ({house}) imports {name}")
    assert offenders == []


def test_cubes_and_tables_never_import_each_other() -> None:
    for house, other in (("cubes", "lake.tables"), ("tables", "lake.cubes")):
        for path in (PACKAGE / house).rglob("*.py"):
            assert not [n for n in _imports(path) if n.startswith(other)], path


def test_no_module_over_500_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > 500}  # fmt: skip
    assert long == {}


def test_no_two_classes_share_a_name() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(str(path.relative_to(PACKAGE)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}


def _distribution(requirement: str) -> str:
    name = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_runtime_import_is_a_declared_dependency() -> None:
    """``pip install -e .`` without extras must bring every package the code imports."""
    declared = {
        _distribution(r)
        for r in tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    providers = importlib.metadata.packages_distributions()
    missing = set()
    for path in _modules():
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "lake" or top in sys.stdlib_module_names:
                continue
            dists = {_distribution(d) for d in providers.get(top, [])}
            if not dists:
                pytest.fail(f"{path.name} imports {top}, which no installed package provides")
            if not dists & declared:
                missing.add(f"{top} (from {', '.join(sorted(dists))}) in {path.name}")
    assert sorted(missing) == []
