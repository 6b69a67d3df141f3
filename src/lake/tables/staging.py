"""Staging: one source part streamed into sorted staging files, one per partition (on workers).

:func:`stage_part` streams one source part, converts types, builds the geometry (WKB, a
``bbox`` covering struct) and a Hilbert index, and appends each row to a staging file of its
partition. Buffers are bounded; every flush is sorted by the Hilbert index, so a staging
file is a sequence of small sorted record batches, each of whose Hilbert range is recorded,
that :mod:`lake.tables.files` reads by range.

Staging files are Arrow IPC files with LZ4-compressed buffers: they are read once, by the
file tasks of the same build, so they are written for speed (less than half the encoding
time of zstd Parquet, and read back without decoding pages) rather than for size.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake.tables.geometry import GTYPE, Geometries, build_geometry
from lake.tables.hilbert import HILBERT, HIST_BINS, HIST_SHIFT, hilbert_index
from lake.tables.partitions import partition_keys, shadowed_columns
from lake.tables.source import COUNTED
from lake.tables.types import convert_types

if TYPE_CHECKING:
    from lake.storage import Root
    from lake.tables.job import TableJob
    from lake.tables.source import SourcePart


P = ParamSpec("P")
R = TypeVar("R")
STAGING_BATCH = 8192
"""Rows per staging record batch: the unit a file task skips or reads."""
STAGING_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)


@dataclass
class StagedPartition:
    key: str
    path: str
    rows: int = 0
    bytes: int = 0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, np.int64))
    ranges: list[tuple[int, int]] = field(default_factory=list)
    """Each record batch's lowest and highest Hilbert index, in the file's order."""

    def batches(self, low: int, high: int) -> list[int]:
        """The record batches holding rows of the Hilbert range [low, high)."""
        return [i for i, (lo, hi) in enumerate(self.ranges) if lo < high and hi >= low]


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
    counts: dict[str, int] = field(default_factory=dict)
    """What the source counted while reading (``unparsed_dates``: see :data:`COUNTED`)."""


def _count(result: PartResult, batch: pa.RecordBatch) -> None:
    for key, value in (batch.schema.metadata or {}).items():
        if key.startswith(COUNTED.encode()):
            what = key.decode()[len(COUNTED) :]
            result.counts[what] = result.counts.get(what, 0) + int(value)


def prepare(batch: pa.RecordBatch, job: TableJob) -> tuple[pa.Table, Geometries, int]:
    """Convert one source batch to the lake's columns plus the helper columns."""
    table = convert_types(batch, job)
    renames = shadowed_columns(table.column_names, job)
    if renames:
        table = table.rename_columns([renames.get(n, n) for n in table.column_names])
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


def staging_sink(root: Root, path: str) -> Any:
    """A file to write a staging file to: Arrow's own on local disk (no Python in the
    write path), else the storage's."""
    if root.local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return pa.OSFile(path, "wb")
    return root.open_write(path)


def staging_source(root: Root, path: str) -> Any:
    """A staging file to read record batches from: memory-mapped on local disk."""
    return pa.memory_map(path) if root.local else root.fs().open(path, "rb")


RELEASE_FRACTION = 0.5
"""Share of a worker's memory limit above which a task hands its freed pages back."""


def releasing_memory(task: Callable[P, R]) -> Callable[P, R]:
    """Give the Arrow memory pool's freed pages back to the system when a task ends and the
    worker's memory runs high (always, outside a worker with a memory limit).

    The pool keeps them for reuse, and the worker's RSS stays at the task's peak: Dask
    pauses a worker whose RSS passes 80% of its limit, even though nothing is held. Below
    half the limit they stay for the next task, which otherwise faults every page in again
    (a tenth of a table build's time, measured).
    """

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return task(*args, **kwargs)
        finally:
            limit = _memory_limit()
            if limit is None or _rss() > RELEASE_FRACTION * limit:
                pa.default_memory_pool().release_unused()

    return run


def _memory_limit() -> int | None:
    try:
        from distributed import get_worker

        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError):
        return None
    return int(limit) if limit else None


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


@releasing_memory
def stage_part(job: TableJob, part: SourcePart) -> PartResult:
    """Read one part of the source and append its rows to staging files by partition.

    Batches are buffered as they come (with each row's partition code); a flush sorts the
    buffer once by (partition, Hilbert index) and appends one sorted run to each
    partition's staging file.
    """
    result = PartResult(part.index)
    writers: dict[str, pa.ipc.RecordBatchFileWriter] = {}
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
        # One int64 key, partition code above the Hilbert index (below 2**33; a part has
        # far fewer than 2**30 partitions): a sixth of the time of a two-key lexsort.
        order = np.argsort((code << 33) | hilbert)
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
                name = f"p{part.index:05d}.arrow"
                path = job.root.path(job.staging, "rows", key, name) if key else \
                    job.root.path(job.staging, "rows", name)  # fmt: skip
                staged = result.staged[key] = StagedPartition(key, path)
            staged.rows += stop - start
            run = hilbert[order[start:stop]]
            bins = np.minimum(run >> HIST_SHIFT, HIST_BINS - 1)
            staged.histogram += np.bincount(bins, minlength=HIST_BINS)
            if key not in writers:
                handles[key] = staging_sink(job.root, staged.path)
                writers[key] = pa.ipc.new_file(handles[key], piece.schema, options=STAGING_OPTIONS)
            offset = 0
            for batch in piece.to_batches(max_chunksize=STAGING_BATCH):
                if batch.num_rows:
                    writers[key].write_batch(batch)
                    last = offset + batch.num_rows - 1
                    staged.ranges.append((int(run[offset]), int(run[last])))
                    offset += batch.num_rows

    try:
        for batch in job.reader.read(part):
            if batch.num_rows == 0:
                continue
            result.rows_read += batch.num_rows
            result.arrow_bytes += batch.nbytes
            _count(result, batch)
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
