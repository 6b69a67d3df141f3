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
    "opendap": "lake.cubes.opendap:OpendapReader",
    "thredds": "lake.cubes.opendap:ThreddsReader",
}
"""Cube source kinds: spec key → reader class."""

TABLE_SOURCES: dict[str, str] = {
    "postgres": "lake.tables.postgres:PostgresReader",
    "netcdf": "lake.tables.netcdf:NetcdfTableReader",
    "dwca": "lake.tables.dwca:DwcaReader",
}
"""Table source kinds: spec key → reader class."""


def _reader_class(dataset: Dataset) -> Any:
    """The class registered for the source key of a dataset's ``cube`` or ``table`` section
    (the spec's validator lets exactly one be set), imported on first use."""
    section: CubeSource | TableSource | None = dataset.cube or dataset.table
    assert section is not None
    names = CUBE_SOURCES if dataset.kind == "cube" else TABLE_SOURCES
    module, _, attr = names[section.kind].partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise SpecError(
            f"{dataset.kind} source {section.kind!r}",
            f"cannot be loaded ({exc})",
            "reinstall marine-lake with its dependencies (`pip install marine-lake`)",
        ) from None


def source_title(dataset: Dataset) -> str:
    """What the dataset's source is, for the catalogue's lineage (``NetCDF files``)."""
    return str(_reader_class(dataset).title)


def cube_reader(dataset: Dataset) -> CubeReader:
    """The reader of a cube dataset's source."""
    assert dataset.cube is not None
    reader: CubeReader = _reader_class(dataset).from_spec(dataset.cube)
    return reader


def table_reader(dataset: Dataset) -> TableReader:
    """The reader of a table dataset's source (a missing credential is a spec error here)."""
    assert dataset.table is not None
    reader: TableReader = _reader_class(dataset).from_spec(dataset.id, dataset.table)
    return reader
