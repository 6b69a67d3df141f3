"""The table flow: one snapshot, parallel reads into staging, sorted files, one commit.

Wiring only: each step calls :mod:`lake.tables`; the dataset's source reader comes from
:mod:`lake.registry`.

1. The source reader describes the source and splits it into parts (for PostgreSQL: one
   exported snapshot, ctid ranges of a table or value ranges of ``split_by``).
2. ``read`` tasks (one per part) read their part and stage rows by partition.
3. For an incremental build with a key, ``check`` tasks find the published files holding
   an older version of a changed row, or a row deleted from the source (``keys`` tasks
   read every source key, ``published keys`` tasks each published file's key columns,
   and one anti-join on the coordinator compares them); their partitions are rewritten
   too.
4. ``write`` tasks write each partition as files of about ``file_mb``, each one Hilbert
   range of the partition, sorted.
5. The coordinator commits (:mod:`lake.tables.manifest`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lake.flows import Flow
from lake.flows.cluster import worker_count
from lake.flows.gather import Progress, gather, quiet, tree_size
from lake.registry import table_reader
from lake.stac.catalog import catalogued_files
from lake.tables.deletions import (
    check_deleted,
    deleted_keys,
    published_keys,
    read_keys,
    source_keys,
)
from lake.tables.files import write_file
from lake.tables.manifest import clean, commit, read_manifest
from lake.tables.plan import (
    MEMORY_FIX,
    Rewrite,
    TableResult,
    changed_keys,
    check_published,
    is_incremental,
    new_run,
    next_manifest,
    nothing_to_publish,
    table_job,
)
from lake.tables.staging import PartResult, stage_part

if TYPE_CHECKING:
    from distributed import Client

    from lake.spec import Dataset
    from lake.storage import Root

__all__ = ["TableResult", "build_table", "dry_run_table"]


def dry_run_table(
    client: Client, root: Root, dataset: Dataset, full_refresh: bool = False
) -> list[str]:
    """What a build of this table would read and write (reads only the catalogue of the
    database and the manifest; writes nothing)."""
    spec = dataset.table
    assert spec is not None
    reader = table_reader(dataset)
    old = read_manifest(root, dataset.id)
    incremental = spec.incremental is not None and old is not None and not full_refresh
    watermark = old.watermark if incremental and old is not None else None
    previous = old.source if incremental and old is not None else None
    with reader.open(watermark, worker_count(client), previous) as source:
        parts, summary = len(source.parts), source.summary
    snapshot = " in one snapshot" if spec.kind == "postgres" else ""
    read = f"{parts} parallel part(s){snapshot}"
    if incremental and old is not None and old.watermark_column is None:
        read += ", the new and changed files"
        write = "the partitions holding rows of new, changed or removed files"
    elif incremental and old is not None:
        read += f", rows with {old.watermark_column} > {old.watermark}"
        write = "the partitions holding new or changed rows"
        if spec.incremental is not None and spec.incremental.deletes == "remove":
            read += ", and every row's key (to find deleted rows)"
            write = "the partitions holding new, changed or deleted rows"
    else:
        read += ", every row"
        write = f"every partition ({' / '.join(spec.partition_by) or 'one folder'})"
    return [dataset.id, "table", summary, read, write]


def build_table(
    client: Client,
    root: Root,
    dataset: Dataset,
    progress: Progress = quiet,
    full_refresh: bool = False,
) -> TableResult:
    """Build or update one table dataset; publish only if every task succeeds."""
    started = time.perf_counter()
    spec = dataset.table
    assert spec is not None
    result = TableResult(dataset.id)
    reader = table_reader(dataset)
    old = read_manifest(root, dataset.id)
    # Files the published catalogue points at stay until the catalogue is rewritten.
    catalogued = catalogued_files(root, dataset.id, old)
    root.remove_partials(dataset.id)
    clean(root, dataset.id, old, catalogued)
    incremental = is_incremental(root, dataset, old, full_refresh)
    result.full = not incremental
    watermark = old.watermark if incremental and old is not None else None

    previous = old.source if incremental and old is not None else None
    with reader.open(watermark, worker_count(client), previous) as source, \
            _released(client, source.reader):  # fmt: skip
        job = table_job(root, dataset, source, new_run(), incremental)
        futures = client.map(stage_part, [job] * len(source.parts), source.parts, pure=False)
        staged: list[PartResult] = gather(
            client, futures, f"{dataset.id}: read", progress, MEMORY_FIX
        )
        deleted = None
        if incremental and old is not None and source.key_parts:
            deleted = _deleted(client, job, root, dataset.id, source.key_parts, old, progress)
            result.counts["deleted"] = deleted.num_rows

    result.rows_read = sum(r.rows_read for r in staged)
    result.bytes_in = sum(r.arrow_bytes for r in staged)
    result.invalid = sum(r.invalid for r in staged)
    result.dropped = sum(r.dropped for r in staged)
    for part in staged:
        for what, n in part.counts.items():
            result.counts[what] = result.counts.get(what, 0) + n
    removed = source.removed if incremental else None
    if deleted is not None and deleted.num_rows:
        removed = (
            deleted
            if removed is None
            else pa.concat_tables([removed, deleted], promote_options="permissive")
        )
    if result.rows_read == 0 and (removed is None or not removed.num_rows):
        if not incremental:  # a first build or a full refresh: nothing to publish
            raise nothing_to_publish(root, job)
        assert old is not None
        result.rows = old.rows
        result.bytes_out = tree_size(root, dataset.id)
        result.seconds = time.perf_counter() - started
        return result

    rewrite = Rewrite.of(staged)
    changed: Any = None
    if incremental and old is not None:
        keys = changed_keys(staged, job.key, removed)
        changed = client.scatter(keys, broadcast=True) if keys is not None else None
        files = list(old.files)
        checks = client.map(
            check_published,
            [job] * len(files),
            [root.path(dataset.id, f.path) for f in files],
            [changed] * len(files),
            pure=False,
        )
        rewrite.add_published(
            files, gather(client, checks, f"{dataset.id}: check", progress, MEMORY_FIX)
        )
    tasks = rewrite.tasks(root, dataset.id, spec.file_mb)
    writes = [client.submit(write_file, job, t, changed, pure=False) for t in tasks]
    done = gather(client, writes, f"{dataset.id}: write", progress, MEMORY_FIX)
    written = [f for f in done if f]

    manifest = next_manifest(
        dataset, job, source, staged, written, rewrite.partitions, old, incremental
    )
    commit(root, job.staging, manifest, old, catalogued)
    result.files_written = len(written)
    result.partitions_written = len(rewrite.partitions)
    result.rows = manifest.rows
    result.bytes_out = tree_size(root, dataset.id)
    result.seconds = time.perf_counter() - started
    return result


@contextlib.contextmanager
def _released(client: Client, reader: Any) -> Iterator[None]:
    """Run the reader's ``release`` (connections kept between parts) on every worker once
    the reads end, whether they succeeded or not."""
    try:
        yield
    finally:
        release = getattr(reader, "release", None)
        if release is not None:
            with contextlib.suppress(Exception):
                client.run(release)


def _deleted(client: Client, job: Any, root: Root, dataset_id: str, key_parts: list[Any],
             old: Any, progress: Progress) -> pa.Table:  # fmt: skip
    """The published keys the source no longer has: every source key read in parallel
    parts of its snapshot, every published file's key columns, one anti-join."""
    reads = client.map(read_keys, [job] * len(key_parts), key_parts, pure=False)
    paths = [root.path(dataset_id, f.path) for f in old.files]
    held = client.map(published_keys, [job] * len(paths), paths, pure=False)
    keys = source_keys(gather(client, reads, f"{dataset_id}: keys", progress, MEMORY_FIX),
                       job.key)  # fmt: skip
    published = gather(client, held, f"{dataset_id}: published keys", progress, MEMORY_FIX)
    deleted = deleted_keys(published, keys, job.key) if published else \
        pa.table({k: pa.array([]) for k in job.key})  # fmt: skip
    check_deleted(job, deleted.num_rows, old.rows, keys.num_rows)
    return deleted


def tidy_table(root: Root, dataset_id: str) -> list[str]:
    """Right after the catalogue was rewritten from the manifest (its items now list exactly
    the manifest's files): drop the data files the manifest no longer lists."""
    return clean(root, dataset_id, read_manifest(root, dataset_id))


def _unknown_size(dataset: Dataset) -> None:
    """A table's size is known only once its source is described (on the cluster)."""


def with_source_metadata(dataset: Dataset, reader: Any) -> Dataset:
    """The dataset with what its source says of itself (a NetCDF file's ACDD attributes, an
    archive's EML: title, description, licence, citation, keywords, providers) where the
    spec's ``metadata`` says nothing; each field kept only if it validates."""
    from lake.spec import Metadata

    if not hasattr(reader, "source_metadata"):
        return dataset
    given = dataset.metadata.model_dump(exclude_unset=True, exclude_defaults=True)
    if {"title", "description", "license", "citation"} <= set(given):
        return dataset  # the spec says it all: no file is opened
    found = {k: v for k, v in reader.source_metadata().items() if k not in given}
    if "license" in given:  # a licence and its address come together
        found.pop("license_url", None)
    merged = dict(given)
    for key in ("license", "title", "description", "citation", "keywords", "providers"):
        if key not in found:
            continue
        extra = {key: found[key]}
        if key == "license" and "license_url" in found:
            extra["license_url"] = found["license_url"]
        try:
            Metadata.model_validate({**merged, **extra})
        except ValueError:
            continue
        merged.update(extra)
    if merged == given:
        return dataset
    return dataset.model_copy(update={"metadata": Metadata.model_validate(merged)})


def with_subtables(dataset: Dataset) -> list[Dataset]:
    """The dataset (its metadata filled from its source, see :func:`with_source_metadata`)
    and the second tables its source holds: ``<id>/measurements`` for a Darwin Core
    archive's measurements or facts, written below the dataset's folder and described in
    its collection. A second table keeps the dataset's year and grid partitions."""
    reader = table_reader(dataset)  # one reader: the source is listed and described once
    main = with_source_metadata(dataset, reader)
    names = reader.subtables() if hasattr(reader, "subtables") else []
    out = [main]
    for name in names:
        table = main.table
        assert table is not None
        kept = [p for p in table.partition_by if p.startswith(("grid(", "year(time)"))]
        sub_table = table.model_copy(update={"partition_by": kept})
        sub_table._rows = name
        title = f"{main.metadata.title or main.id}: {name}"
        sub = main.model_copy(update={
            "id": f"{main.id}/{name}", "table": sub_table,
            "metadata": main.metadata.model_copy(update={"title": title}),
        })  # fmt: skip
        sub._part_of = main.id
        out.append(sub)
    return out


FLOW = Flow(build_table, dry_run_table, tidy_table, _unknown_size, with_subtables)
