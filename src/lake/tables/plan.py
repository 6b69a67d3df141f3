"""What a table build writes: the job, the partitions to (re)write, their files, the manifest.

The rules (documented in the README):

* A full build (the first, ``--full-refresh``, or a dataset without ``incremental``) writes
  every partition. An incremental one reads only rows past the manifest's watermark and
  rewrites every partition that receives a new row or holds an older version of a changed
  key (found by ``check`` tasks); other partitions keep their files.
* A changed ``partition_by`` needs a full refresh.
* Each partition is split into Hilbert ranges holding about ``file_mb`` of rows each.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lake.errors import SourceError, TargetError
from lake.report import DatasetReport
from lake.tables.files import FileTask, TableFile, matches
from lake.tables.geometry import crs_bounds, crs_projjson
from lake.tables.hilbert import HIST_BINS, HIST_SHIFT, bbox_hilbert, split_ranges
from lake.tables.job import TableJob
from lake.tables.manifest import Manifest

if TYPE_CHECKING:
    from lake.spec import Dataset
    from lake.storage import Root
    from lake.tables.source import SourcePlan
    from lake.tables.staging import PartResult, StagedPartition

MEMORY_FIX = (
    "lower the table's `staging_mb` and `file_mb` in the spec (a read task holds "
    "`staging_mb` of rows, a write task one file of about `file_mb`)"
)


@dataclass
class TableResult:
    """What one table build did (one row of ``lake build``'s summary)."""

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
    counts: dict[str, int] = field(default_factory=dict)
    """What the source counted while reading (see :data:`COUNT_NOTES`)."""

    def report(self) -> DatasetReport:
        added = {"rows": self.rows_read, "files": self.files_written}
        notes = [f"{self.dataset}: {COUNT_NOTES.get(what, what + ': {n}').format(n=n)}"
                 for what, n in sorted(self.counts.items()) if n]  # fmt: skip
        return DatasetReport(
            self.dataset, "table", self.rows_read, self.bytes_in, self.bytes_out, self.rows,
            added, self.seconds, self, notes,
        )  # fmt: skip


COUNT_NOTES = {
    "deleted": "{n} row(s) deleted from the source since the last build, removed",
    "unparsed_dates": "{n} row(s) with a date that is not ISO 8601: kept as text, with "
    "`time` empty (in the partition year=none)",
    "unparsed_numbers": "{n} coordinate, depth or elevation value(s) that are not numbers, "
    "stored as nulls (the archive's verbatim terms keep what was recorded)",
}
"""What a source's counts mean, for the build's notes."""


def is_incremental(root: Root, dataset: Dataset, old: Manifest | None, full_refresh: bool) -> bool:
    """Whether this build updates the published table (else it rewrites it whole)."""
    spec = dataset.table
    assert spec is not None
    partitioning = list(spec.partition_by)
    if old is not None and not full_refresh and old.partitioning != partitioning:
        raise TargetError(
            f"{root.display}/{dataset.id}",
            f"was built with partition_by {old.partitioning}, the spec now says {partitioning}",
            "rerun with --full-refresh to rebuild the table with the new partitions",
        )
    return spec.incremental is not None and old is not None and not full_refresh


def new_run() -> str:
    """A build run's id: sortable by time, unique (it names the run's files)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def table_job(
    root: Root, dataset: Dataset, source: SourcePlan, run: str, incremental: bool
) -> TableJob:
    spec = dataset.table
    assert spec is not None
    return TableJob(
        dataset=dataset.id,
        label=source.label,
        reader=source.reader,
        root=root,
        staging=f"{dataset.id}/.staging/{run}",
        run=run,
        geometry_column=spec.geometry.column or "geometry",
        lon=spec.geometry.lon or source.lon,
        lat=spec.geometry.lat or source.lat,
        source_geometry=spec.geometry.column,
        geography=source.geography,
        srid=source.srid,
        invalid=spec.geometry.invalid,
        partitions=spec.partitions,
        time_column=spec.time_column,
        watermark=spec.incremental.column if spec.incremental else None,
        key=source.key if incremental else [],
        bounds=crs_bounds(source.srid),
        crs=crs_projjson(source.srid),
        numeric=source.numeric,
        null_years=spec.kind != "postgres",
        row_group_rows=spec.row_group_rows,
        buffer_bytes=int(spec.staging_mb * 2**20),
    )


def nothing_to_publish(root: Root, job: TableJob) -> SourceError:
    """A first build or a full refresh read no rows: drop its staging, say so."""
    fs = root.fs()
    if fs.exists(root.path(job.staging)):
        fs.rm(root.path(job.staging), recursive=True)
    return SourceError(
        job.label,
        "returned no rows, so there is nothing to publish",
        "check the table or query (and its WHERE clause); a table dataset is "
        "published once its source has rows",
    )


def changed_keys(
    staged: list[PartResult], key: list[str], removed: pa.Table | None = None
) -> pa.Table | None:
    """The distinct keys of the rows read, and of those removed from the source (an
    incremental build replaces or drops their old rows)."""
    tables = [r.keys for r in staged if r.keys is not None]
    if removed is not None and removed.num_rows:
        tables.append(removed)
    return pa.concat_tables(tables).group_by(key).aggregate([]) if tables else None


def check_published(job: TableJob, path: str, changed: pa.Table | None) -> tuple[bool, np.ndarray]:
    """Whether a published file holds a changed key, and its Hilbert histogram (a task)."""
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


@dataclass
class Rewrite:
    """The partitions a build writes: per partition folder, the Hilbert histogram of its
    rows, their size, the staged files holding its new rows, and its published files."""

    histograms: dict[str, np.ndarray] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    staged: dict[str, list[StagedPartition]] = field(default_factory=dict)
    published: dict[str, list[TableFile]] = field(default_factory=dict)

    @classmethod
    def of(cls, parts: list[PartResult]) -> Rewrite:
        out = cls()
        for part in parts:
            for key, piece in part.staged.items():
                out.histograms[key] = out.histograms.get(key, 0) + piece.histogram
                out.sizes[key] = out.sizes.get(key, 0) + piece.bytes
                out.staged.setdefault(key, []).append(piece)
        return out

    def add_published(self, files: list[TableFile], checked: list[tuple[bool, np.ndarray]]) -> None:
        """Add the published files of every partition that gets new rows or holds a changed
        key (``checked``: :func:`check_published` of each file)."""
        for info in files:
            self.published.setdefault(info.key, []).append(info)
        hit = {f.key for f, (found, _) in zip(files, checked, strict=True) if found}
        for info, (_, hist) in zip(files, checked, strict=True):
            key = info.key
            if key in self.histograms or key in hit:
                self.histograms[key] = self.histograms.get(key, 0) + hist
                self.sizes[key] = self.sizes.get(key, 0) + info.bytes
                self.staged.setdefault(key, [])

    @property
    def partitions(self) -> set[str]:
        return set(self.histograms)

    def tasks(self, root: Root, dataset: str, file_mb: float) -> list[FileTask]:
        """One task per output file: a Hilbert range of about ``file_mb`` of rows. The
        largest come first, so that no large file is left to write alone at the end."""
        target = int(file_mb * 2**20)
        out: list[tuple[int, FileTask]] = []
        for key in sorted(self.histograms):
            nfiles = max(1, math.ceil(self.sizes[key] / target))
            olds = [root.path(dataset, f.path) for f in self.published.get(key, [])]
            histogram = self.histograms[key]
            for i, (low, high) in enumerate(split_ranges(histogram, nfiles)):
                staged = [(s.path, s.batches(low, high)) for s in self.staged[key]]
                rows = int(histogram[low >> HIST_SHIFT : high >> HIST_SHIFT].sum())
                out.append((rows, FileTask(key, i, low, high, staged, olds)))
        out.sort(key=lambda pair: -pair[0])
        return [task for _, task in out]


def next_manifest(
    dataset: Dataset,
    job: TableJob,
    source: SourcePlan,
    staged: list[PartResult],
    written: list[TableFile],
    rewritten: set[str],
    old: Manifest | None,
    incremental: bool,
) -> Manifest:
    """The manifest to commit: kept files of untouched partitions plus the new files."""
    spec = dataset.table
    assert spec is not None
    kept = [f for f in (old.files if incremental and old else []) if f.key not in rewritten]
    marks = [r.watermark for r in staged if r.watermark is not None]
    mark: Any = max(marks) if marks else None
    if old is not None and incremental and old.watermark is not None:
        mark = old.watermark if mark is None else max(mark, old.watermark)
    return Manifest(
        dataset=dataset.id,
        files=sorted([*kept, *written], key=lambda f: f.path),
        watermark=mark,
        watermark_column=spec.incremental.column if spec.incremental else None,
        key=source.key,
        partitioning=list(spec.partition_by),
        geometry_column=job.geometry_column,
        source=dict(source.record),
        time_column=job.time_column,
    )
