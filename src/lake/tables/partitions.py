"""Hive partitions of rows: ``year=2015/cell_10deg=N50p0E000p0`` folders from the spec's
``partition_by``, the values a folder name carries, and the item name of a partition."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake.errors import SourceError

if TYPE_CHECKING:
    from lake.tables.geometry import Geometries
    from lake.tables.job import TableJob


NO_CELL = "none"
"""Grid cell of rows without a geometry (and year of rows without a time, in tables from
files)."""
SHADOWED = "_source"
"""Added to a source column named like a partition folder (``year`` → ``year_source``)."""


def shadowed_columns(names: list[str], job: TableJob) -> dict[str, str]:
    """Source columns named like a partition folder (an archive's own text ``year`` beside
    ``year(time)``), renamed so that readers merging folders and files see two columns.
    Raises when the spec uses such a column by its name."""
    folders = {partition_name(kind, arg) for kind, arg in job.partitions if kind != "column"}
    renames = {name: f"{name}{SHADOWED}" for name in names if name in folders}
    used = {job.time_column, job.lon, job.lat, job.watermark, *job.key,
            *(arg for kind, arg in job.partitions if kind != "grid")}  # fmt: skip
    for name in renames:
        if name in used:
            raise SourceError(
                f"{job.label}: column {name!r}",
                f"has the name of a partition folder ({name}=...), and the spec uses it",
                f"rename it in the source or a query ({name} AS {name}{SHADOWED})",
            )
    return renames


def partition_name(kind: str, arg: str) -> str:
    if kind == "year":
        return "year"
    if kind == "grid":
        return f"cell_{arg.replace('.', 'p')}deg"
    return arg


def partition_keys(
    table: pa.Table, geoms: Geometries, job: TableJob
) -> tuple[np.ndarray, list[str]]:
    """Each row's partition as a code into the hive paths (``year=2015/cell_10deg=N50p0E000p0``).

    Vectorised: values are encoded per level, and only the distinct ones become strings.
    """
    combined = np.zeros(table.num_rows, dtype=np.int64)
    labels: list[list[str]] = []
    for kind, arg in job.partitions:
        name = partition_name(kind, arg)
        if kind == "grid":
            size = float(arg)
            lon = np.floor(np.clip(geoms.cx, -180, 179.999999) / size).astype(np.int64)
            lat = np.floor(np.clip(geoms.cy, -90, 89.999999) / size).astype(np.int64)
            cell = np.where(geoms.valid, (lat + 1000) * 10_000 + (lon + 1000), -1)
            values, codes = np.unique(cell, return_inverse=True)
            level = [
                f"{name}={_cell((v // 10_000 - 1000) * size, (v % 10_000 - 1000) * size)}"
                if v >= 0 else f"{name}={NO_CELL}"
                for v in values.tolist()
            ]  # fmt: skip
        else:
            column = table.column(arg)
            column = pc.year(column) if kind == "year" else column
            if kind == "year" and job.null_years:  # rows without a time: year=none
                encoded = column.combine_chunks().dictionary_encode(null_encoding="encode")
            else:
                _no_nulls(column, arg, job)
                encoded = column.combine_chunks().dictionary_encode()
            codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            level = [
                f"{name}={NO_CELL if v is None else urllib.parse.quote(str(v), safe='')}"
                for v in encoded.dictionary.cast(pa.string()).to_pylist()
            ]
        combined = combined * len(level) + codes
        labels.append(level)
    uniques, inverse = _distinct(combined, _product(len(level) for level in labels))
    paths = []
    for value in uniques.tolist():
        parts, rest = [], value
        for level in reversed(labels):
            rest, index = divmod(rest, len(level))
            parts.append(level[index])
        paths.append("/".join(reversed(parts)))
    return inverse, paths


def _product(sizes: Iterable[int]) -> int:
    out = 1
    for size in sizes:
        out *= size
    return out


def _distinct(codes: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(codes, return_inverse=True)`` for codes in ``[0, bound)``: by counting in
    one pass where ``bound`` is small beside the rows (a year or a few levels), instead of
    a sort of every row."""
    if bound > max(4 * len(codes), 2**16):
        uniques, inverse = np.unique(codes, return_inverse=True)
        return uniques, np.asarray(inverse, dtype=np.int64).reshape(-1)
    present = np.bincount(codes, minlength=bound) > 0
    uniques = np.flatnonzero(present)
    remap = np.cumsum(present, dtype=np.int64) - 1
    return uniques, remap[codes]


def _no_nulls(values: pa.ChunkedArray, column: str, job: TableJob) -> None:
    # A null partition value has no portable folder name: pyarrow cannot convert the
    # hive default partition to pandas, and DuckDB rejects files outside the folders.
    if values.null_count:
        raise SourceError(
            f"{job.label}: partition column {column!r}",
            f"is null in {values.null_count} row(s), and each partition needs a value "
            "(null folders are not read alike by pyarrow, pandas and DuckDB)",
            f"filter those rows or give them a value in a query, e.g. "
            f"`coalesce({column}, ...) AS {column}`",
        )


def _cell(lat: float, lon: float) -> str:
    ns = "N" if lat >= 0 else "S"
    ew = "E" if lon >= 0 else "W"
    return f"{ns}{abs(lat):04.1f}{ew}{abs(lon):05.1f}".replace(".", "p")


def partition_values(path: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for segment in filter(None, path.split("/")):
        name, _, value = segment.partition("=")
        out[name] = urllib.parse.unquote(value)
    return out


def item_name(key: str) -> str:
    """The item-id suffix of a partition folder: ``year=2015/cell=x`` → ``year-2015.cell-x``.

    Manifests list files in the order of this name, so that the catalogue can stream them
    into items already sorted by id.
    """
    return key.replace("/", ".").replace("=", "-").replace("%", "_")
