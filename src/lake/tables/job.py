"""What a worker needs to stage and write one table: one picklable job per build."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lake.storage import Root
    from lake.tables.source import PartReader


@dataclass(frozen=True)
class TableJob:
    """Everything a worker needs to stage and write one table (picklable, no live handles)."""

    dataset: str
    label: str
    reader: PartReader
    """Reads one part of the source on a worker (it joins the build's snapshot, if any)."""
    root: Root
    staging: str
    """Staging prefix below the root (``<dataset>/.staging/<run>``)."""
    run: str
    geometry_column: str
    lon: str | None
    lat: str | None
    source_geometry: str | None
    geography: bool
    srid: int | None
    invalid: str
    partitions: list[tuple[str, str]]
    time_column: str | None
    watermark: str | None
    key: list[str]
    bounds: tuple[float, float, float, float]
    crs: dict[str, Any]
    """PROJJSON of the geometry's CRS (computed once, written into every file's metadata)."""
    numeric: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    """numeric columns → (precision, scale) when decimal128 holds them, else None (text)."""
    null_years: bool = False
    """Rows without a time go to ``year=none`` (tables from files), rather than stop the
    build (PostgreSQL: a query can give them a value)."""
    row_group_rows: int = 100_000
    buffer_bytes: int = 256 * 2**20

    def dropped_columns(self) -> list[str]:
        """Columns carried by the path (column partitions), not by the files."""
        return [arg for kind, arg in self.partitions if kind == "column"]
