"""Arrow record batches → hive-partitioned GeoParquet 1.1.

Two steps, both run on workers:

1. :func:`stage_part` streams one source part, converts types, builds the geometry (WKB,
   a ``bbox`` covering struct) and a Hilbert index, and appends each row to a staging file
   of its partition. Buffers are bounded; every flush is sorted by the Hilbert index, so a
   staging file is a sequence of small sorted row groups.
2. :func:`write_file` gathers the rows of one Hilbert range of one partition (row groups
   outside the range are skipped by their statistics), sorts them, and writes one final
   file: zstd, row groups of ``row_group_rows``, ``geo`` metadata with the file's bbox and
   geometry types.

Files are written below a staging prefix and moved into ``data/`` by the commit
(:mod:`lake.tablestore`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lake.errors import SourceError, SpecError

P = ParamSpec("P")
R = TypeVar("R")

if TYPE_CHECKING:
    from lake.sources.postgres import Part, Secret
    from lake.storage import Root

GEOPARQUET_VERSION = "1.1.0"
NO_CELL = "none"
"""Grid cell of rows without a geometry."""
HILBERT_LEVEL = 16
HILBERT_NULL = 1 << (2 * HILBERT_LEVEL)
"""Hilbert index of rows without geometry: after every real index."""
HIST_SHIFT = 2 * HILBERT_LEVEL - 10
HIST_BINS = (HILBERT_NULL >> HIST_SHIFT) + 1
HILBERT = "_lake_hilbert"
GTYPE = "_lake_gtype"
STAGING_ROW_GROUP = 8192
BBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")
WORLD = (-180.0, -90.0, 180.0, 90.0)
_GEOMETRY_NAMES = {
    0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint",
    5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection",
}  # fmt: skip
_PARQUET_OK = (
    pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string,
    pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary,
    pa.types.is_date32, pa.types.is_timestamp, pa.types.is_decimal, pa.types.is_time,
)  # fmt: skip


@dataclass(frozen=True)
class TableJob:
    """Everything a worker needs to stage and write one table (picklable, no live handles)."""

    dataset: str
    label: str
    secret: Secret
    snapshot: str
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
    row_group_rows: int = 100_000
    buffer_bytes: int = 256 * 2**20

    def dropped_columns(self) -> list[str]:
        """Columns carried by the path (column partitions), not by the files."""
        return [arg for kind, arg in self.partitions if kind == "column"]


def partition_name(kind: str, arg: str) -> str:
    if kind == "year":
        return "year"
    if kind == "grid":
        return f"cell_{arg.replace('.', 'p')}deg"
    return arg


# --------------------------------------------------------------------------- types


def convert_types(batch: pa.RecordBatch, job: TableJob) -> pa.Table:
    """Map driver types to the lake's documented Parquet types."""
    arrays: list[pa.Array] = []
    names: list[str] = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        arrays.append(_convert(name, column, job))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def _convert(name: str, column: pa.Array, job: TableJob) -> pa.Array:
    typ = column.type
    if isinstance(typ, pa.BaseExtensionType):
        ext = typ.extension_name
        storage = column.storage
        if ext == "arrow.uuid":
            return _uuid_text(storage)
        if ext == "arrow.json":
            return storage
        type_name = getattr(typ, "type_name", "")
        if type_name == "numeric":
            return _numeric(name, storage, job.numeric.get(name), job.label)
        if type_name in ("geometry", "geography"):
            return storage
        column, typ = storage, storage.type
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return column
    if not any(check(typ) for check in _PARQUET_OK):
        raise SourceError(
            f"{job.label}: column {name!r}",
            f"has a type the lake does not store ({typ})",
            f"cast it in a query, e.g. `{name}::text`",
        )
    return column


def _uuid_text(storage: pa.Array) -> pa.Array:
    """16-byte UUIDs as canonical lower-case text, built as one buffer."""
    if storage.offset:
        storage = pa.concat_arrays([storage])  # a copy starting at offset 0
    n = len(storage)
    raw = np.frombuffer(storage.buffers()[1], dtype=np.uint8)[: n * 16].reshape(n, 16)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = digits[raw >> 4]
    hexed[:, 1::2] = digits[raw & 15]
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst in ((slice(0, 8), slice(0, 8)), (slice(8, 12), slice(9, 13)),
                     (slice(12, 16), slice(14, 18)), (slice(16, 20), slice(19, 23)),
                     (slice(20, 32), slice(24, 36))):  # fmt: skip
        text[:, dst] = hexed[:, src]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [storage.buffers()[0], pa.py_buffer(offsets), pa.py_buffer(text.tobytes())],
        null_count=storage.null_count, offset=0,
    )  # fmt: skip


def _numeric(name: str, storage: pa.Array, decimal: tuple[int, int] | None, label: str) -> pa.Array:
    if decimal is None:
        return storage.cast(pa.string())
    precision, scale = decimal
    try:
        return storage.cast(pa.decimal128(precision, scale))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise SourceError(
            f"{label}: column {name!r}",
            f"holds values that numeric({precision},{scale}) as decimal128 cannot hold "
            "(NaN or Infinity)",
            f"cast the column in a query, e.g. `{name}::double precision`",
        ) from None


def numeric_plan(typmod: int) -> tuple[int, int] | None:
    """decimal128 (precision, scale) for a numeric typmod, None when it does not fit."""
    if typmod < 4:
        return None
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    if not 1 <= precision <= 38 or scale > precision:
        return None
    return precision, scale


# --------------------------------------------------------------------------- geometry


def point_wkb(x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> pa.Array:
    """ISO WKB points, built as one buffer (21 bytes a point), null where not ``valid``."""
    n = len(x)
    record = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])
    data = np.zeros(n, dtype=record)
    data["order"] = 1
    data["type"] = 1
    data["x"] = x
    data["y"] = y
    kept = data[valid]
    lengths = np.where(valid, record.itemsize, 0).astype(np.int32)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    mask = pa.array(valid).buffers()[1] if not valid.all() else None
    return pa.Array.from_buffers(
        pa.binary(), n, [mask, pa.py_buffer(offsets), pa.py_buffer(kept.tobytes())],
        null_count=int(n - valid.sum()),
    )  # fmt: skip


def _bbox(xmin: np.ndarray, ymin: np.ndarray, xmax: np.ndarray, ymax: np.ndarray,
          valid: np.ndarray) -> pa.StructArray:  # fmt: skip
    fields = [pa.array(a, pa.float64(), mask=~valid) for a in (xmin, ymin, xmax, ymax)]
    return pa.StructArray.from_arrays(fields, names=list(BBOX_FIELDS), mask=pa.array(~valid))


@dataclass
class Geometries:
    wkb: pa.Array
    bbox: pa.StructArray
    valid: np.ndarray
    gtype: np.ndarray
    cx: np.ndarray
    cy: np.ndarray


def build_geometry(table: pa.Table, job: TableJob) -> Geometries:
    if job.lon is not None and job.lat is not None:
        x = _floats(table.column(job.lon), job.lon, job.label)
        y = _floats(table.column(job.lat), job.lat, job.label)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(x) & np.isfinite(y) & (np.abs(x) <= 180) & (np.abs(y) <= 90)
        x = np.where(valid, x, 0.0)
        y = np.where(valid, y, 0.0)
        return Geometries(
            point_wkb(x, y, valid), _bbox(x, y, x, y, valid), valid,
            np.where(valid, 0, -1).astype(np.int16), x, y,
        )  # fmt: skip
    import shapely

    assert job.source_geometry is not None
    raw = table.column(job.source_geometry).combine_chunks()
    geoms = shapely.from_wkb(np.asarray(raw.to_numpy(zero_copy_only=False), dtype=object))
    if job.srid is not None:
        srids = shapely.get_srid(geoms)
        present = ~shapely.is_missing(geoms)
        other = present & (srids != job.srid) & (srids != 0)
        if other.any():
            found = sorted({int(s) for s in srids[other]})
            raise SourceError(
                f"{job.label}: column {job.source_geometry!r}",
                f"mixes SRIDs ({job.srid} and {', '.join(map(str, found))})",
                "transform the column to one SRID in a query (ST_Transform)",
            )
    valid = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    has_z = shapely.has_z(geoms)
    wkb = shapely.to_wkb(geoms, flavor="iso", include_srid=False, output_dimension=3)
    bounds = shapely.bounds(geoms)
    bounds = np.where(valid[:, None], bounds, 0.0)
    gtype = np.where(valid, shapely.get_type_id(geoms) + 1000 * has_z, -1).astype(np.int16)
    return Geometries(
        pa.array(wkb, pa.binary(), mask=~valid),
        _bbox(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3], valid),
        valid, gtype, (bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2,
    )  # fmt: skip


def _floats(column: pa.ChunkedArray, name: str, label: str) -> np.ndarray:
    typ = column.type
    if isinstance(typ, pa.BaseExtensionType):
        column = pa.chunked_array([c.storage for c in column.chunks], typ.storage_type)
        typ = typ.storage_type
    if pa.types.is_decimal(typ) or pa.types.is_string(typ):
        try:
            column = column.cast(pa.float64())
        except pa.ArrowInvalid:
            raise SourceError(
                f"{label}: coordinate column {name!r}",
                "holds values that are not numbers",
                f"cast it in a query, e.g. `{name}::double precision`",
            ) from None
    elif not (pa.types.is_floating(typ) or pa.types.is_integer(typ)):
        raise SpecError(
            f"{label}: coordinate column {name!r}",
            f"is of type {typ}, not a number",
            "name numeric longitude and latitude columns in `geometry`",
        )
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def geometry_type_names(codes: Iterable[int]) -> list[str]:
    names = set()
    for code in codes:
        if code < 0:
            continue
        base = _GEOMETRY_NAMES.get(code % 1000, "Geometry")
        names.add(base + (" Z" if code >= 1000 else ""))
    return sorted(names)


def hilbert_index(x: np.ndarray, y: np.ndarray, valid: np.ndarray,
                  bounds: tuple[float, float, float, float]) -> np.ndarray:  # fmt: skip
    """Index along a level-16 Hilbert curve over ``bounds``; ``HILBERT_NULL`` where invalid."""
    side = 1 << HILBERT_LEVEL
    xmin, ymin, xmax, ymax = bounds
    with np.errstate(invalid="ignore"):
        fx = np.clip((x - xmin) / (xmax - xmin), 0.0, 1.0)
        fy = np.clip((y - ymin) / (ymax - ymin), 0.0, 1.0)
    xi = np.minimum((np.nan_to_num(fx) * side).astype(np.int64), side - 1)
    yi = np.minimum((np.nan_to_num(fy) * side).astype(np.int64), side - 1)
    d = np.zeros(len(x), dtype=np.int64)
    s = side >> 1
    while s > 0:
        rx = (xi & s) > 0
        ry = (yi & s) > 0
        d += s * s * ((3 * rx.astype(np.int64)) ^ ry.astype(np.int64))
        # Rotate the quadrant so the curve stays continuous.
        flip = ~ry
        swap_x = np.where(flip & rx, s - 1 - xi, xi)
        swap_y = np.where(flip & rx, s - 1 - yi, yi)
        xi = np.where(flip, swap_y, xi)
        yi = np.where(flip, swap_x, yi)
        s >>= 1
    return np.where(valid, d, HILBERT_NULL)


# --------------------------------------------------------------------------- partitions


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
            _no_nulls(column, arg, job)
            encoded = column.combine_chunks().dictionary_encode()
            codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            level = [
                f"{name}={urllib.parse.quote(str(v), safe='')}"
                for v in encoded.dictionary.cast(pa.string()).to_pylist()
            ]
        combined = combined * len(level) + codes
        labels.append(level)
    uniques, inverse = np.unique(combined, return_inverse=True)
    paths = []
    for value in uniques.tolist():
        parts, rest = [], value
        for level in reversed(labels):
            rest, index = divmod(rest, len(level))
            parts.append(level[index])
        paths.append("/".join(reversed(parts)))
    return inverse.astype(np.int64), paths


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


# --------------------------------------------------------------------------- staging


@dataclass
class StagedPartition:
    key: str
    path: str
    rows: int = 0
    bytes: int = 0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, np.int64))


@dataclass
class PartResult:
    part: int
    rows_read: int = 0
    invalid: int = 0
    dropped: int = 0
    arrow_bytes: int = 0
    watermark: Any = None
    staged: dict[str, StagedPartition] = field(default_factory=dict)
    keys: pa.Table | None = None


def prepare(batch: pa.RecordBatch, job: TableJob) -> tuple[pa.Table, Geometries, int]:
    """Convert one source batch to the lake's columns plus the helper columns."""
    table = convert_types(batch, job)
    geoms = build_geometry(table, job)
    invalid = int((~geoms.valid).sum())
    hilbert = hilbert_index(geoms.cx, geoms.cy, geoms.valid, job.bounds)
    if job.source_geometry is not None:
        table = table.drop_columns([job.source_geometry])
    table = table.append_column(job.geometry_column, geoms.wkb)
    table = table.append_column("bbox", geoms.bbox)
    table = table.append_column(HILBERT, pa.array(hilbert, pa.int64()))
    table = table.append_column(GTYPE, pa.array(geoms.gtype, pa.int16()))
    return table, geoms, invalid


def releasing_memory(task: Callable[P, R]) -> Callable[P, R]:
    """Give the Arrow memory pool's freed pages back to the system when a task ends.

    The pool keeps them for reuse; the worker's RSS would stay at the task's peak, and
    Dask pauses a worker whose RSS passes 80% of its limit, even though nothing is held.
    """

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return task(*args, **kwargs)
        finally:
            pa.default_memory_pool().release_unused()

    return run


@releasing_memory
def stage_part(job: TableJob, part: Part) -> PartResult:
    """Read one part of the source and append its rows to staging files by partition.

    Batches are buffered as they come (with each row's partition code); a flush sorts the
    buffer once by (partition, Hilbert index) and appends one sorted run to each
    partition's staging file.
    """
    from lake.sources.postgres import read_part

    result = PartResult(part.index)
    writers: dict[str, pq.ParquetWriter] = {}
    handles: dict[str, Any] = {}
    tables: list[pa.Table] = []
    codes: list[np.ndarray] = []
    buffered = 0
    keys: list[pa.Table] = []
    paths: dict[str, int] = {}  # partition path -> code, stable over the whole part

    def flush() -> None:
        if not tables:
            return
        table = pa.concat_tables(tables)
        code = np.concatenate(codes)
        tables.clear()
        codes.clear()
        hilbert = table.column(HILBERT).to_numpy()
        order = np.lexsort((hilbert, code))
        table = table.take(pa.array(order))
        code = code[order]
        bounds = np.searchsorted(code, np.arange(len(paths) + 1))
        for key, index in paths.items():
            start, stop = int(bounds[index]), int(bounds[index + 1])
            if start == stop:
                continue
            piece = table.slice(start, stop - start)
            staged = result.staged.get(key)
            if staged is None:
                name = f"p{part.index:05d}.parquet"
                path = job.root.path(job.staging, "rows", key, name) if key else \
                    job.root.path(job.staging, "rows", name)  # fmt: skip
                staged = result.staged[key] = StagedPartition(key, path)
            staged.rows += stop - start
            bins = np.minimum(hilbert[order[start:stop]] >> HIST_SHIFT, HIST_BINS - 1)
            staged.histogram += np.bincount(bins, minlength=HIST_BINS)
            if key not in writers:
                handles[key] = job.root.open_write(staged.path)
                # Staging is read once: fast zstd, no dictionaries, statistics only where the
                # file tasks prune row groups.
                writers[key] = pq.ParquetWriter(
                    handles[key], piece.schema, compression="zstd", compression_level=1,
                    use_dictionary=False, write_statistics=[HILBERT],
                )  # fmt: skip
            writers[key].write_table(piece, row_group_size=STAGING_ROW_GROUP)

    try:
        for batch in read_part(job.secret, job.snapshot, part.sql, job.label):
            if batch.num_rows == 0:
                continue
            result.rows_read += batch.num_rows
            result.arrow_bytes += batch.nbytes
            table, geoms, invalid = prepare(batch, job)
            result.invalid += invalid
            if job.watermark is not None:
                top = pc.max(table.column(job.watermark)).as_py()
                if top is not None and (result.watermark is None or top > result.watermark):
                    result.watermark = top
            if job.key:
                keys.append(table.select(job.key))
            local, uniques = partition_keys(table, geoms, job)
            if job.invalid == "drop" and invalid:
                table = table.filter(pa.array(geoms.valid))
                local = local[geoms.valid]
                result.dropped += invalid
            if table.num_rows == 0:
                continue
            remap = np.array([paths.setdefault(k, len(paths)) for k in uniques], dtype=np.int64)
            tables.append(table)
            codes.append(remap[local])
            buffered += table.nbytes
            if buffered > job.buffer_bytes:
                flush()
                buffered = 0
        flush()
    finally:
        for key, writer in writers.items():
            writer.close()
            handles[key].close()
    fs = job.root.fs()
    for staged in result.staged.values():
        staged.bytes = int(fs.size(staged.path))
    if keys:
        result.keys = pa.concat_tables(keys)
    return result


# --------------------------------------------------------------------------- final files


@dataclass(frozen=True)
class FileTask:
    key: str
    index: int
    low: int
    high: int
    """Hilbert range [low, high) of the rows of this file."""
    staged: list[str]
    old: list[str]
    """Previously published files of the partition (rewritten without the changed keys)."""


def item_name(key: str) -> str:
    """The item-id suffix of a partition folder: ``year=2015/cell=x`` → ``year-2015.cell-x``.

    Manifests list files in the order of this name, so that the catalogue can stream them
    into items already sorted by id.
    """
    return key.replace("/", ".").replace("=", "-").replace("%", "_")


@dataclass
class FileInfo:
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

    @property
    def key(self) -> str:
        """The partition folder below ``data/`` as written (``year=2015/cell_10deg=…``)."""
        folder = self.path.rsplit("/", 1)[0]
        return "" if folder == "data" else folder.removeprefix("data/")

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "partition": self.partition, "rows": self.rows,
            "bytes": self.bytes, "sha256": self.sha256, "bbox": self.bbox,
            "geometry_types": self.geometry_types, "time": self.time,
            "null_geometries": self.invalid,
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FileInfo:
        return cls(
            doc["path"], doc["partition"], doc["rows"], doc["bytes"], doc["sha256"],
            doc["bbox"], doc["geometry_types"], doc["time"], doc.get("null_geometries", 0),
        )  # fmt: skip


def _read_range(fs: Any, path: str, low: int, high: int) -> Iterator[pa.Table]:
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        meta = parquet.metadata
        # Statistics are per leaf column: find the helper column among the leaves.
        first = meta.row_group(0)
        column = next(
            j for j in range(first.num_columns) if first.column(j).path_in_schema == HILBERT
        )
        groups = []
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(column).statistics
            if stats is None or not stats.has_min_max or (stats.min < high and stats.max >= low):
                groups.append(i)
        if not groups:
            return
        table = parquet.read_row_groups(groups)
    hil = table.column(HILBERT)
    yield table.filter(pc.and_(pc.greater_equal(hil, low), pc.less(hil, high)))


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


def bbox_hilbert(
    bbox: pa.ChunkedArray | pa.StructArray, bounds: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Hilbert index of the centres of written rows' ``bbox`` values, and which rows have one."""
    if isinstance(bbox, pa.ChunkedArray):
        bbox = bbox.combine_chunks()
    valid = np.asarray(bbox.is_valid().to_numpy(zero_copy_only=False))

    def field(name: str) -> np.ndarray:
        return np.asarray(bbox.field(name).fill_null(0.0).to_numpy(zero_copy_only=False))

    cx = (field("xmin") + field("xmax")) / 2
    cy = (field("ymin") + field("ymax")) / 2
    return hilbert_index(cx, cy, valid, bounds), valid


def old_geometry_codes(table: pa.Table, job: TableJob) -> np.ndarray:
    if job.lon is not None:
        return np.where(table.column("bbox").is_valid().to_numpy(zero_copy_only=False), 0, -1)
    import shapely

    geoms = shapely.from_wkb(np.asarray(table.column(job.geometry_column).to_pylist(), object))
    valid = ~shapely.is_missing(geoms)
    return np.where(valid, shapely.get_type_id(geoms) + 1000 * shapely.has_z(geoms), -1).astype(
        np.int16
    )


@releasing_memory
def write_file(job: TableJob, task: FileTask, changed: pa.Table | None) -> FileInfo | None:
    """Write the rows of one Hilbert range of one partition as one sorted GeoParquet file."""
    fs = job.root.fs()
    pieces = [t for path in task.staged for t in _read_range(fs, path, task.low, task.high)]
    pieces += [_read_old(fs, path, task.low, task.high, job, changed) for path in task.old]
    pieces = [p for p in pieces if p.num_rows]
    if not pieces:
        return None
    table = pa.concat_tables([p.replace_schema_metadata(None) for p in pieces],
                             promote_options="permissive").sort_by(HILBERT)  # fmt: skip
    codes = pc.unique(table.column(GTYPE)).to_pylist()
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
        store_schema=True,
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
    return FileInfo(
        relative, partition_values(task.key), table.num_rows, len(data),
        hashlib.sha256(data).hexdigest(), extent, types, times,
        table.num_rows - valid_rows,
    )  # fmt: skip


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "tzinfo") and getattr(value, "tzinfo", None) is not None:
        return str(value.isoformat().replace("+00:00", "Z"))
    return str(value.isoformat())


def geo_metadata(job: TableJob, types: list[str], extent: list[float] | None) -> dict[str, Any]:
    """GeoParquet 1.1 ``geo`` metadata of one file."""
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": types,
        "crs": job.crs,
        "covering": {"bbox": {f: ["bbox", f] for f in BBOX_FIELDS}},
    }
    if extent is not None:
        column["bbox"] = extent
    if job.geography:
        column["edges"] = "spherical"
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": job.geometry_column,
        "columns": {job.geometry_column: column},
    }


def crs_projjson(srid: int | None) -> dict[str, Any]:
    """PROJJSON of the SRID; lon/lat columns and SRID 4326 are OGC:CRS84 (x = longitude)."""
    from pyproj import CRS

    if srid is None or srid == 4326:
        return dict(CRS.from_user_input("OGC:CRS84").to_json_dict())
    return dict(CRS.from_epsg(srid).to_json_dict())


def crs_bounds(srid: int | None) -> tuple[float, float, float, float]:
    """The CRS's area of use in its own coordinates: the square the Hilbert curve covers."""
    if srid is None or srid in (4326, 4258, 4269):
        return WORLD
    from pyproj import CRS, Transformer

    crs = CRS.from_epsg(srid)
    area = crs.area_of_use
    if crs.is_geographic or area is None:
        return WORLD
    transformer = Transformer.from_crs("OGC:CRS84", crs, always_xy=True)
    xmin, ymin, xmax, ymax = transformer.transform_bounds(*area.bounds)
    return (float(xmin), float(ymin), float(xmax), float(ymax))
