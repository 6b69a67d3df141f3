"""Source kinds by name: which class reads a dataset's ``cube`` or ``table`` section.

A source kind is one module with one class (a :class:`lake.cubes.source.CubeReader` or a
:class:`lake.tables.source.TableReader`) and one line here: the name of its key in the
spec and the dotted path of the class, imported only when a dataset uses it (as fsspec's
registry does). The spec field of the same name holds the source's options, so that
pydantic names that field in every error and mypy checks every access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lake.errors import SpecError

if TYPE_CHECKING:
    from lake.cubes.source import CubeReader
    from lake.spec import CubeSource, Dataset, TableSource
    from lake.tables.source import TableReader

CUBE_SOURCES: dict[str, str] = {
    "netcdf": "lake.cubes.netcdf:NetcdfReader",
}
"""Cube source kinds: spec key → reader class."""

TABLE_SOURCES: dict[str, str] = {
    "postgres": "lake.tables.postgres:PostgresReader",
}
"""Table source kinds: spec key → reader class."""


def _load(path: str, kind: str, name: str) -> Any:
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise SpecError(
            f"{kind} source {name!r}",
            f"cannot be loaded ({exc})",
            "reinstall marine-lake with its dependencies (`pip install marine-lake`)",
        ) from None


def source_kind(section: CubeSource | TableSource, names: dict[str, str]) -> str:
    """The one registered source key set in a ``cube`` or ``table`` section."""
    found = [name for name in names if getattr(section, name, None) is not None]
    if len(found) != 1:
        raise SpecError(
            "source", f"the section names {len(found)} source kinds ({', '.join(found)})",
            f"give exactly one of: {', '.join(names)}",
        )  # fmt: skip
    return found[0]


def source_title(dataset: Dataset) -> str:
    """What the dataset's source is, for the catalogue's lineage (``NetCDF files``)."""
    if dataset.cube is not None:
        name = source_kind(dataset.cube, CUBE_SOURCES)
        return str(_load(CUBE_SOURCES[name], "cube", name).title)
    assert dataset.table is not None
    name = source_kind(dataset.table, TABLE_SOURCES)
    return str(_load(TABLE_SOURCES[name], "table", name).title)


def cube_reader(dataset: Dataset) -> CubeReader:
    """The reader of a cube dataset's source."""
    assert dataset.cube is not None
    name = source_kind(dataset.cube, CUBE_SOURCES)
    cls = _load(CUBE_SOURCES[name], "cube", name)
    reader: CubeReader = cls.from_spec(dataset.cube)
    return reader


def table_reader(dataset: Dataset) -> TableReader:
    """The reader of a table dataset's source (a missing credential is a spec error here)."""
    assert dataset.table is not None
    name = source_kind(dataset.table, TABLE_SOURCES)
    cls = _load(TABLE_SOURCES[name], "table", name)
    reader: TableReader = cls.from_spec(dataset.id, dataset.table)
    return reader
