"""The cube flow: scan sources, plan, write both layouts as one Dask graph, publish."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distributed import as_completed
from distributed.scheduler import KilledWorker

from lake.cube import NetcdfFeed, ZarrFeed, block_regions, publish, recover, write_block
from lake.cubeplan import layout_group, plan_cube
from lake.errors import LakeError
from lake.flows.cluster import worker_count
from lake.sources import scans
from lake.sources.netcdf import FileInfo, list_sources, scan_files
from lake.sources.scans import Listed, ScanRecord, listed

if TYPE_CHECKING:
    from distributed import Client, Future

    from lake.cubeplan import CubePlan
    from lake.spec import Dataset
    from lake.storage import Root

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``."""


@dataclass
class CubeResult:
    dataset: str
    files_found: int = 0
    files_scanned: int = 0  # opened for their time axis: new or changed since the last build
    files_read: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    ntime: int = 0
    added: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _quiet(stage: str, done: int, total: int) -> None:
    return None


CUBE_MEMORY_FIX = "lower `chunking.shard_mb` in the spec (each task holds one shard)"


def _gather(
    client: Client,
    futures: list[Future[Any]],
    stage: str,
    progress: Progress,
    memory_fix: str = CUBE_MEMORY_FIX,
) -> list[Any]:
    total = len(futures)
    progress(stage, 0, total)
    for done, future in enumerate(as_completed(futures), 1):
        if future.status == "error":
            # Cancel the rest so nothing more is written, then raise the task's own error.
            error = future.exception()
            client.cancel([f for f in futures if f is not future])
            if isinstance(error, KilledWorker):
                raise LakeError(
                    f"{stage} on the Dask cluster",
                    "workers died repeatedly while running a task, most likely out of memory",
                    f"{memory_fix}, or give each worker more memory",
                ) from None
            raise error
        progress(stage, done, total)
    return list(client.gather(futures))


def submit_writes(
    client: Client, plan: CubePlan, storage_options: dict[str, Any]
) -> list[Future[Any]]:
    """One task per shard-aligned block; time-series blocks wait for the maps blocks they read."""
    assert plan.index is not None
    source_feed = NetcdfFeed(plan.index, storage_options)
    futures: list[Future[Any]] = []
    maps_blocks: dict[str, list[tuple[slice, Future[Any]]]] = {}
    maps = next((w for w in plan.layouts if w.layout == "maps"), None)
    ordered = sorted(plan.layouts, key=lambda w: w.layout != "maps")
    for work in ordered:
        feed: Any = source_feed
        if work.layout == "timeseries" and maps is not None:
            feed = ZarrFeed(dict(maps.targets))
        for name, target in work.targets.items():
            committed = work.committed.get(name)
            for region in block_regions(target, work.published_ntime):
                deps: list[Future[Any]] = []
                if work.layout == "timeseries" and maps is not None:
                    t = region["time"]
                    deps = [
                        f
                        for r, f in maps_blocks.get(name, [])
                        if r.start < t.stop and t.start < r.stop
                    ]
                future = client.submit(
                    _write,
                    target,
                    region,
                    feed,
                    committed,
                    work.published_ntime,
                    deps,
                    pure=False,
                )
                futures.append(future)
                if work.layout == "maps":
                    maps_blocks.setdefault(name, []).append((region["time"], future))
    return futures


def _write(target: Any, region: Any, feed: Any, committed: Any, ntime: int, deps: Any) -> int:
    return write_block(target, region, feed, committed, ntime)


@dataclass
class Scanned:
    """The source files of one build and what their scans found, in URL order."""

    files: list[Listed]
    infos: list[FileInfo]
    record: ScanRecord
    rescanned: int

    def remember(self, root: Root, dataset_id: str) -> None:
        """Record these scans for the next build (only if they differ from the record)."""
        scans.write(root, dataset_id, self.record, self.files,
                    {info.url: info for info in self.infos})  # fmt: skip


def scan_and_plan(
    client: Client, root: Root, dataset: Dataset, progress: Progress = _quiet
) -> tuple[CubePlan, Scanned]:
    """Scan the sources on the workers and plan what a build would write (writes nothing).

    Files whose scan the dataset's record holds (same URL, size and version) are not
    opened again: see :mod:`lake.sources.scans`.
    """
    cube = dataset.cube
    assert cube is not None
    files = [listed(url, info) for url, info in
             list_sources(cube.patterns, cube.storage_options).items()]  # fmt: skip
    record = scans.read(root, dataset.id, cube.variables)
    found, rescan = record.reuse(files)
    # A few batches per worker: thousands of one-file tasks would cost more to schedule
    # than to run.
    workers = worker_count(client)
    size = max(1, min(64, len(rescan) // (4 * workers)))
    batches = [[(f.url, f.size) for f in rescan[i : i + size]]
               for i in range(0, len(rescan), size)]  # fmt: skip
    futures = client.map(
        scan_files,
        batches,
        storage_options=cube.storage_options,
        variables=cube.variables,
        pure=False,
    )
    for batch in _gather(client, futures, f"{dataset.id}: scan", progress):
        found.update((info.url, info) for info in batch)
    infos = [found[f.url] for f in files]
    scanned = Scanned(files, infos, record, len(rescan))
    return plan_cube(root, dataset, infos), scanned


def dry_run_cube(client: Client, root: Root, dataset: Dataset) -> list[str]:
    """What a build of this cube would read and write."""
    plan, _ = scan_and_plan(client, root, dataset)
    source = f"{plan.files_found} files found"
    if plan.empty or plan.index is None:
        return [dataset.id, "cube", source, "nothing new", "nothing"]
    read = f"{len(plan.index.files)} files, {plan.ntime} time steps"
    write = ", ".join(
        f"{w.layout}: steps {w.published_ntime}..{plan.ntime - 1}, "
        f"{sum(len(list(block_regions(t, w.published_ntime))) for t in w.targets.values())} "
        "shard blocks"
        for w in plan.layouts
    )
    return [dataset.id, "cube", source, read, write]


def build_cube(
    client: Client, root: Root, dataset: Dataset, progress: Progress = _quiet
) -> CubeResult:
    """Build or extend every layout of one cube dataset; publish only if all blocks succeed."""
    started = time.perf_counter()
    cube = dataset.cube
    assert cube is not None
    result = CubeResult(dataset.id)
    root.remove_partials(dataset.id)
    for layout in cube.layouts:
        recover(root, layout_group(dataset.id, layout))
    plan, scanned = scan_and_plan(client, root, dataset, progress)
    result.files_found = plan.files_found
    result.files_scanned = scanned.rescanned
    result.ntime = plan.ntime
    if not plan.empty:
        assert plan.index is not None
        futures = submit_writes(client, plan, cube.storage_options)
        _gather(client, futures, f"{dataset.id}: write", progress)
        for work in plan.layouts:
            publish(root, work.group, work.documents)
            result.added[work.layout] = plan.ntime - work.published_ntime
        result.files_read = len(plan.index.files)
        read = set(plan.index.files)
        result.bytes_in = sum(info.size for info in scanned.infos if info.url in read)
        # Only a build that published something writes: a rerun with no new input writes
        # nothing at all, and its scans are recorded by the next append.
        scanned.remember(root, dataset.id)
    result.bytes_out = _tree_size(root, dataset.id)
    result.seconds = time.perf_counter() - started
    return result


def _tree_size(root: Root, dataset_id: str) -> int:
    fs = root.fs()
    path = root.path(dataset_id)
    if not fs.exists(path):
        return 0
    return int(fs.du(path, total=True))
