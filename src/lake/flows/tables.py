"""The table flow: one snapshot, parallel reads into staging, sorted files, one commit.

1. The coordinator opens a read-only repeatable-read session, exports its snapshot,
   describes the source and splits it into parts (ctid ranges of a table, or value ranges
   of ``split_by``).
2. ``read`` tasks (one per part) join the snapshot and stage rows by partition.
3. For an incremental build with a key, ``check`` tasks find the published files holding
   an older version of a changed row; their partitions are rewritten too.
4. ``write`` tasks write each partition as files of about ``file_mb``, each one Hilbert
   range of the partition, sorted.
5. The coordinator commits (:mod:`lake.tablestore`).
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lake.errors import SourceError, SpecError, TargetError
from lake.flows.cluster import worker_count
from lake.flows.cubes import Progress, _gather, _quiet, _tree_size
from lake.sources.postgres import Described, Session, resolve_dsn
from lake.stac.catalog import catalogued_files
from lake.table import (
    HIST_BINS,
    HIST_SHIFT,
    FileInfo,
    FileTask,
    PartResult,
    TableJob,
    bbox_hilbert,
    crs_bounds,
    crs_projjson,
    matches,
    stage_part,
    write_file,
)
from lake.tablestore import Manifest, clean, commit, read_manifest

MEMORY_FIX = (
    "lower the table's `staging_mb` and `file_mb` in the spec (a read task holds "
    "`staging_mb` of rows, a write task one file of about `file_mb`)"
)


if TYPE_CHECKING:
    from distributed import Client

    from lake.spec import Dataset, TableSource
    from lake.storage import Root

_NUMBERS = {"int2", "int4", "int8", "float4", "float8", "numeric"}
_TIMES = {"date", "timestamp", "timestamptz"}
_PARTITION_VALUES = {"int2", "int4", "int8", "text", "varchar", "bpchar", "bool", "date"}


@dataclass
class TableResult:
    dataset: str
    rows_read: int = 0
    rows: int = 0
    invalid: int = 0
    dropped: int = 0
    files_written: int = 0
    partitions_written: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    full: bool = False


def _check_columns(described: Described, table: TableSource, subject: str) -> None:
    """Every column the spec names exists and has a type the role needs."""
    names = [c.name for c in described.columns]
    known = ", ".join(names)

    def need(column: str, field_name: str, types: set[str] | None, what: str) -> None:
        found = described.column(column)
        if found is None:
            raise SourceError(
                f"{described.label}",
                f"has no column {column!r} (named by {subject}.{field_name})",
                f"name one of its columns: {known}",
            )
        if types is not None and found.type_name not in types:
            raise SpecError(
                f"{subject}.{field_name}",
                f"column {column!r} is of type {found.type_name}, not {what}",
                f"name a {what} column",
            )

    geo = table.geometry
    if geo.column is not None:
        need(geo.column, "geometry.column", {"geometry", "geography"}, "PostGIS geometry")
    else:
        assert geo.lon is not None and geo.lat is not None
        need(geo.lon, "geometry.lon", _NUMBERS, "number")
        need(geo.lat, "geometry.lat", _NUMBERS, "number")
        for reserved in ("geometry", "bbox"):
            if reserved in names:
                raise SpecError(
                    f"{subject}.geometry",
                    f"the source already has a column {reserved!r}, which the lake adds",
                    f"rename it in a query ({reserved} AS source_{reserved})",
                )
    for kind, arg in table.partitions:
        if kind == "year":
            need(arg, "partition_by", _TIMES, "date or timestamp")
        elif kind == "column":
            need(arg, "partition_by", _PARTITION_VALUES, "integer, text, boolean or date")
    if table.time:
        need(table.time, "time", _TIMES, "date or timestamp")
    if table.incremental is not None:
        need(table.incremental.column, "incremental.column",
             _TIMES | {"int2", "int4", "int8"}, "timestamp, date or integer")  # fmt: skip
        for key in table.incremental.key or []:
            need(key, "incremental.key", None, "")
    if table.postgres.split_by is not None:
        need(table.postgres.split_by, "postgres.split_by",
             _TIMES | {"int2", "int4", "int8"}, "integer, date or timestamp")  # fmt: skip


def _srid(session: Session, described: Described, column: str) -> tuple[int | None, bool]:
    from psycopg import sql

    found = described.column(column)
    assert found is not None
    geography = found.type_name == "geography"
    query = sql.SQL("SELECT ST_SRID(q.{c}) FROM {s} AS q WHERE q.{c} IS NOT NULL LIMIT 1").format(
        c=sql.Identifier(column), s=sql.SQL(described.select)
    )
    rows = session.fetch(query)
    srid = int(rows[0][0]) if rows and rows[0][0] else None
    if geography and not srid:
        srid = 4326
    return (srid or None), geography


def _split_ranges(histogram: np.ndarray, nfiles: int) -> list[tuple[int, int]]:
    """Hilbert ranges holding near-equal numbers of rows."""
    cumulative = np.cumsum(histogram)
    total = int(cumulative[-1])
    edges = [0]
    for i in range(1, nfiles):
        b = int(np.searchsorted(cumulative, total * i / nfiles, side="left")) + 1
        if edges[-1] < b < HIST_BINS:
            edges.append(b)
    edges.append(HIST_BINS)
    return [(lo << HIST_SHIFT, hi << HIST_SHIFT) for lo, hi in itertools.pairwise(edges)]


def _check_old(job: TableJob, path: str, changed: pa.Table | None) -> tuple[bool, np.ndarray]:
    """Whether a published file holds a changed key, and its Hilbert histogram."""
    fs = job.root.fs()
    columns = ["bbox", *(job.key if changed is not None else [])]
    with fs.open(path, "rb") as handle:
        table = pq.read_table(handle, columns=columns)
    hil, _ = bbox_hilbert(table.column("bbox"), job.bounds)
    hist = np.bincount(np.minimum(hil >> HIST_SHIFT, HIST_BINS - 1), minlength=HIST_BINS)
    hit = False
    if changed is not None:
        hit = bool(matches(table, changed, job.key).any())
    return hit, hist


def dry_run_table(
    client: Client, root: Root, dataset: Dataset, full_refresh: bool = False
) -> list[str]:
    """What a build of this table would read and write (reads only the catalogue of the
    database and the manifest; writes nothing)."""
    spec = dataset.table
    assert spec is not None
    subject = f"datasets[{dataset.id}].table"
    secret = resolve_dsn(spec.postgres, subject)
    old = read_manifest(root, dataset.id)
    incremental = spec.incremental is not None and old is not None and not full_refresh
    label = f"table {spec.postgres.table}" if spec.postgres.table else f"query of {dataset.id}"
    workers = worker_count(client)
    with Session(secret, label) as session:
        described = session.describe(spec.postgres)
        _check_columns(described, spec, subject)
        watermark = old.watermark if incremental and old is not None else None
        parts = session.plan_parts(described, spec, watermark, workers)
    source = f"{described.label}, {len(described.columns)} columns"
    if described.heap_bytes:
        source += f", {described.heap_bytes / 1e6:.0f} MB heap"
    read = f"{len(parts)} parallel part(s) in one snapshot"
    if incremental and old is not None:
        read += f", rows with {old.watermark_column} > {old.watermark}"
        write = "the partitions holding new or changed rows"
    else:
        read += ", every row"
        write = f"every partition ({' / '.join(spec.partition_by) or 'one folder'})"
    return [dataset.id, "table", source, read, write]


def build_table(
    client: Client,
    root: Root,
    dataset: Dataset,
    progress: Progress = _quiet,
    full_refresh: bool = False,
) -> TableResult:
    """Build or update one table dataset; publish only if every task succeeds."""
    started = time.perf_counter()
    spec = dataset.table
    assert spec is not None
    subject = f"datasets[{dataset.id}].table"
    result = TableResult(dataset.id)
    secret = resolve_dsn(spec.postgres, subject)
    old = read_manifest(root, dataset.id)
    # Files the published catalogue points at stay until the catalogue is rewritten.
    catalogued = catalogued_files(root, dataset.id, old)
    root.remove_partials(dataset.id)
    clean(root, dataset.id, old, catalogued)
    partitioning = list(spec.partition_by)
    if old is not None and not full_refresh and old.partitioning != partitioning:
        raise TargetError(
            f"{root.display}/{dataset.id}",
            f"was built with partition_by {old.partitioning}, the spec now says {partitioning}",
            "rerun with --full-refresh to rebuild the table with the new partitions",
        )
    incremental = spec.incremental is not None and old is not None and not full_refresh
    result.full = not incremental
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    staging = f"{dataset.id}/.staging/{run}"
    label = f"table {spec.postgres.table}" if spec.postgres.table else f"query of {dataset.id}"
    workers = worker_count(client)

    with Session(secret, label) as session:
        described = session.describe(spec.postgres)
        _check_columns(described, spec, subject)
        key: list[str] = []
        if spec.incremental is not None:
            key = list(spec.incremental.key or described.primary_key)
            if not key:
                raise SpecError(
                    f"{subject}.incremental.key",
                    f"{described.label} has no primary key to recognise an updated row",
                    "name the columns identifying a row in `incremental.key`",
                )
        srid, geography = None, False
        if spec.geometry.column is not None:
            srid, geography = _srid(session, described, spec.geometry.column)
        numeric = {
            c.name: (c.precision, c.scale or 0) if c.precision and c.precision <= 38 else None
            for c in described.columns
            if c.type_name == "numeric"
        }
        watermark = old.watermark if incremental and old is not None else None
        parts = session.plan_parts(described, spec, watermark, workers)
        job = TableJob(
            dataset=dataset.id,
            label=label,
            secret=secret,
            snapshot=session.snapshot,
            root=root,
            staging=staging,
            run=run,
            geometry_column=spec.geometry.column or "geometry",
            lon=spec.geometry.lon,
            lat=spec.geometry.lat,
            source_geometry=spec.geometry.column,
            geography=geography,
            srid=srid,
            invalid=spec.geometry.invalid,
            partitions=spec.partitions,
            time_column=spec.time_column,
            watermark=spec.incremental.column if spec.incremental else None,
            key=key if incremental else [],
            bounds=crs_bounds(srid),
            crs=crs_projjson(srid),
            numeric=numeric,
            row_group_rows=spec.row_group_rows,
            buffer_bytes=int(spec.staging_mb * 2**20),
        )
        futures = client.map(stage_part, [job] * len(parts), parts, pure=False)
        stage = f"{dataset.id}: read"
        staged: list[PartResult] = _gather(client, futures, stage, progress, MEMORY_FIX)

    result.rows_read = sum(r.rows_read for r in staged)
    result.bytes_in = sum(r.arrow_bytes for r in staged)
    result.invalid = sum(r.invalid for r in staged)
    result.dropped = sum(r.dropped for r in staged)
    if result.rows_read == 0:
        if not incremental:  # a first build or a full refresh: nothing to publish
            fs = root.fs()
            if fs.exists(root.path(staging)):
                fs.rm(root.path(staging), recursive=True)
            raise SourceError(
                described.label,
                "returned no rows, so there is nothing to publish",
                "check the table or query (and its WHERE clause); a table dataset is "
                "published once its source has rows",
            )
        assert old is not None
        result.rows = old.rows
        result.bytes_out = _tree_size(root, dataset.id)
        result.seconds = time.perf_counter() - started
        return result

    # Partitions: their staged pieces, and (incremental) the published files they replace.
    histograms: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    inputs: dict[str, list[str]] = {}
    for part in staged:
        for key_path, piece in part.staged.items():
            histograms[key_path] = histograms.get(key_path, 0) + piece.histogram
            sizes[key_path] = sizes.get(key_path, 0) + piece.bytes
            inputs.setdefault(key_path, []).append(piece.path)
    changed: pa.Table | None = None
    changed_future: Any = None
    old_files: dict[str, list[FileInfo]] = {}
    if incremental and old is not None:
        tables = [r.keys for r in staged if r.keys is not None]
        changed = pa.concat_tables(tables).group_by(key).aggregate([]) if tables else None
        if changed is not None:
            changed_future = client.scatter(changed, broadcast=True)
        for info in old.files:
            old_files.setdefault(info.key, []).append(info)
        infos = list(old.files)
        checks = client.map(
            _check_old,
            [job] * len(infos),
            [root.path(dataset.id, f.path) for f in infos],
            [changed_future] * len(infos),
            pure=False,
        )
        checked = _gather(client, checks, f"{dataset.id}: check", progress, MEMORY_FIX)
        hit_keys = {f.key for f, (hit, _) in zip(infos, checked, strict=True) if hit}
        for info, (_, hist) in zip(infos, checked, strict=True):
            key_path = info.key
            if key_path in histograms or key_path in hit_keys:
                histograms[key_path] = histograms.get(key_path, 0) + hist
                sizes[key_path] = sizes.get(key_path, 0) + info.bytes
                inputs.setdefault(key_path, [])
    target = int(spec.file_mb * 2**20)
    tasks: list[FileTask] = []
    for key_path in sorted(histograms):
        nfiles = max(1, math.ceil(sizes[key_path] / target))
        olds = [root.path(dataset.id, f.path) for f in old_files.get(key_path, [])]
        for i, (low, high) in enumerate(_split_ranges(histograms[key_path], nfiles)):
            tasks.append(FileTask(key_path, i, low, high, inputs[key_path], olds))
    writes = [client.submit(write_file, job, t, changed_future, pure=False) for t in tasks]
    done = _gather(client, writes, f"{dataset.id}: write", progress, MEMORY_FIX)
    written = [f for f in done if f]

    rewritten = set(histograms)
    kept = [f for f in (old.files if incremental and old else []) if f.key not in rewritten]
    marks = [r.watermark for r in staged if r.watermark is not None]
    mark = max(marks) if marks else None
    if old is not None and incremental and old.watermark is not None:
        mark = old.watermark if mark is None else max(mark, old.watermark)
    manifest = Manifest(
        dataset=dataset.id,
        files=sorted([*kept, *written], key=lambda f: f.path),
        watermark=mark,
        watermark_column=spec.incremental.column if spec.incremental else None,
        key=key,
        partitioning=partitioning,
        geometry_column=job.geometry_column,
        source={
            "kind": "table" if spec.postgres.table else "query",
            "table": spec.postgres.table,
            "crs_srid": srid,
        },
    )
    commit(root, staging, manifest, old, catalogued)
    result.files_written = len(written)
    result.partitions_written = len(rewritten)
    result.rows = manifest.rows
    result.bytes_out = _tree_size(root, dataset.id)
    result.seconds = time.perf_counter() - started
    return result


def tidy_table(root: Root, dataset_id: str) -> list[str]:
    """Right after the catalogue was rewritten from the manifest (its items now list exactly
    the manifest's files): drop the data files the manifest no longer lists."""
    return clean(root, dataset_id, read_manifest(root, dataset_id))
