"""Final files: the rows of one Hilbert range of one partition as one sorted GeoParquet file.

:func:`write_file` gathers the rows of its range from the staging files (only the record
batches whose recorded Hilbert range overlaps it) and, for an incremental build, from the
partition's published files (without the changed keys), sorts them, and writes one file:
zstd, row groups of ``row_group_rows``, dictionaries for the columns whose values repeat,
``geo`` metadata with the file's bbox and geometry types. Files are written below the
staging prefix and moved into ``data/`` by the commit (:mod:`lake.tables.manifest`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lake.tables.geometry import GTYPE, geo_metadata, geometry_type_names, old_geometry_codes
from lake.tables.hilbert import HILBERT, bbox_hilbert
from lake.tables.partitions import partition_values
from lake.tables.staging import releasing_memory, staging_source

if TYPE_CHECKING:
    from lake.storage import Root
    from lake.tables.job import TableJob


@dataclass(frozen=True)
class FileTask:
    key: str
    index: int
    low: int
    high: int
    """Hilbert range [low, high) of the rows of this file."""
    staged: list[tuple[str, list[int]]]
    """Staging files holding rows of the range, each with the record batches to read."""
    old: list[str]
    """Previously published files of the partition (rewritten without the changed keys)."""


@dataclass
class TableFile:
    path: str
    """Relative to the dataset folder: ``data/year=2015/part-….parquet``."""
    partition: dict[str, str | None]
    rows: int
    bytes: int
    sha256: str
    bbox: list[float] | None
    geometry_types: list[str]
    time: list[str | None]
    invalid: int
    platforms: list[str] = field(default_factory=list)
    """The platforms (float, glider, ship, station ids) the file's rows come from, when the
    table has a platform column (see :func:`platforms_of`)."""

    @property
    def key(self) -> str:
        """The partition folder below ``data/`` as written (``year=2015/cell_10deg=…``)."""
        folder = self.path.rsplit("/", 1)[0]
        return "" if folder == "data" else folder.removeprefix("data/")


def _read_range(root: Root, path: str, batches: list[int], low: int, high: int) -> pa.Table:
    """The rows of Hilbert range [low, high) in the given record batches of a staging file."""
    with staging_source(root, path) as handle:
        reader = pa.ipc.open_file(handle, options=pa.ipc.IpcReadOptions(use_threads=False))
        table = pa.Table.from_batches([reader.get_batch(i) for i in batches], reader.schema)
    hil = table.column(HILBERT)
    bounds = pc.min_max(hil).as_py()
    if bounds["min"] is None or (bounds["min"] >= low and bounds["max"] < high):
        return table  # every row is in the range: no copy
    return table.filter(pc.and_(pc.greater_equal(hil, low), pc.less(hil, high)))


def _read_old(fs: Any, path: str, low: int, high: int, job: TableJob,
              changed: pa.Table | None) -> pa.Table:  # fmt: skip
    with fs.open(path, "rb") as handle:
        table = pq.read_table(handle)
    table = table.replace_schema_metadata(None)
    hilbert, _ = bbox_hilbert(table.column("bbox"), job.bounds)
    table = table.append_column(HILBERT, pa.array(hilbert, pa.int64()))
    table = table.append_column(GTYPE, pa.array(old_geometry_codes(table, job), pa.int16()))
    table = table.filter(pa.array((hilbert >= low) & (hilbert < high)))
    if changed is not None and table.num_rows:
        table = table.filter(pa.array(~matches(table, changed, job.key)))
    return table


def matches(table: pa.Table, keys: pa.Table, names: list[str]) -> np.ndarray:
    """Which rows of ``table`` have their key (``names``) in ``keys``."""
    if len(names) == 1:
        found = pc.is_in(table.column(names[0]), value_set=keys.column(names[0]).combine_chunks())
        return np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    probe = table.select(names).append_column(
        "_lake_row", pa.array(np.arange(table.num_rows, dtype=np.int64))
    )
    hits = probe.join(keys, keys=names, join_type="left semi").column("_lake_row")
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[np.asarray(hits.to_numpy())] = True
    return mask


@releasing_memory
def write_file(job: TableJob, task: FileTask, changed: pa.Table | None) -> TableFile | None:
    """Write the rows of one Hilbert range of one partition as one sorted GeoParquet file."""
    fs = job.root.fs()
    pieces = [_read_range(job.root, path, batches, task.low, task.high)
              for path, batches in task.staged if batches]  # fmt: skip
    pieces += [_read_old(fs, path, task.low, task.high, job, changed) for path in task.old]
    pieces = [p for p in pieces if p.num_rows]
    if not pieces:
        return None
    table = pa.concat_tables([p.replace_schema_metadata(None) for p in pieces],
                             promote_options="permissive").sort_by(HILBERT)  # fmt: skip
    codes = pc.unique(table.column(GTYPE)).to_pylist()
    platforms = platforms_of(table)  # before a platform column goes into the folder names
    table = table.drop_columns([HILBERT, GTYPE, *job.dropped_columns()])
    bbox = table.column("bbox")
    valid_rows = table.num_rows - bbox.null_count
    extent = None
    if valid_rows:
        extent = [
            float(pc.min(pc.struct_field(bbox, "xmin")).as_py()),
            float(pc.min(pc.struct_field(bbox, "ymin")).as_py()),
            float(pc.max(pc.struct_field(bbox, "xmax")).as_py()),
            float(pc.max(pc.struct_field(bbox, "ymax")).as_py()),
        ]
    types = geometry_type_names(codes)
    table = table.replace_schema_metadata({b"geo": json.dumps(geo_metadata(job, types, extent))})
    sink = pa.BufferOutputStream()
    pq.write_table(
        table, sink, compression="zstd", compression_level=3,
        row_group_size=job.row_group_rows, write_statistics=True,
        store_schema=True, use_dictionary=repeated_columns(table),
    )  # fmt: skip
    data = sink.getvalue()
    name = f"part-{job.run}-{task.index:05d}.parquet"
    relative = "/".join(p for p in ("data", task.key, name) if p)
    with job.root.open_write(job.root.path(job.staging, relative)) as handle:
        handle.write(data)
    times: list[str | None] = [None, None]
    if job.time_column and job.time_column in table.column_names:
        column = table.column(job.time_column)
        low, high = pc.min(column).as_py(), pc.max(column).as_py()
        times = [_iso(low), _iso(high)]
    return TableFile(
        relative, partition_values(task.key), table.num_rows, len(data),
        hashlib.sha256(data).hexdigest(), extent, types, times,
        table.num_rows - valid_rows, platforms,
    )  # fmt: skip


DICTIONARY_SAMPLE = 10_000
REPEATED = 0.5
"""A column is dictionary-encoded when at most this share of a sample's values are distinct."""


def repeated_columns(table: pa.Table) -> list[str]:
    """The leaf columns (``bbox.xmin`` for a struct's field) worth dictionary-encoding: those
    whose values repeat (names, flags, dataset ids, a station's position).

    Parquet writers try a dictionary on every column and fall back to plain pages once it
    grows past a page; for near-unique columns (keys, times, coordinates of moving
    platforms) that costs twice the encoding time and gives larger files.
    """
    n = table.num_rows
    step = max(1, n // DICTIONARY_SAMPLE)
    sample = table.take(pa.array(np.arange(0, n, step))) if step > 1 else table
    out: list[str] = []

    def visit(path: str, column: pa.ChunkedArray | pa.Array) -> None:
        typ = column.type
        if pa.types.is_struct(typ):
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks()
            for i in range(typ.num_fields):
                visit(f"{path}.{typ.field(i).name}", column.field(i))
        elif not pa.types.is_nested(typ) and _repeats(column):
            out.append(path)

    for name in table.column_names:
        visit(name, sample.column(name))
    return out


def _repeats(column: pa.ChunkedArray | pa.Array) -> bool:
    return len(column) > 0 and pc.count_distinct(column).as_py() <= REPEATED * len(column)


PLATFORM_ROLES = {b"trajectory_id", b"timeseries_id"}
"""CF ``cf_role`` values naming a platform (a glider's or ship's track, a station)."""
PLATFORM_NAMES = ("platform_number", "platform_code", "wmo_platform_code", "platform_id")
"""Column names (any case) of a platform id where no ``cf_role`` says it (Argo's
``PLATFORM_NUMBER``, Copernicus in-situ ``platform_code``)."""
MAX_PLATFORMS = 1000


def platforms_of(table: pa.Table) -> list[str]:
    """The distinct platform ids of a file's rows (at most :data:`MAX_PLATFORMS`)."""
    names = [f.name for f in table.schema
             if (f.metadata or {}).get(b"cf_role") in PLATFORM_ROLES]  # fmt: skip
    names += [n for n in table.column_names if n.lower() in PLATFORM_NAMES and n not in names]
    for name in names:
        column = table.column(name)
        if pa.types.is_string(column.type) or pa.types.is_integer(column.type):
            values = pc.unique(column.drop_null()).cast(pa.string()).to_pylist()
            return sorted(v for v in values if v)[:MAX_PLATFORMS]
    return []


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "tzinfo") and getattr(value, "tzinfo", None) is not None:
        return str(value.isoformat().replace("+00:00", "Z"))
    return str(value.isoformat())
