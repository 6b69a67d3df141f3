"""The cube flow: scan sources, plan, write both layouts as one Dask graph, publish.

Wiring only: each step calls :mod:`lake.cubes`; the dataset's source reader comes from
:mod:`lake.registry`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lake.cubes import scans, steps
from lake.cubes.blocks import SourceFeed, Written, ZarrFeed, block_regions, write_block
from lake.cubes.plan import layout_group, plan_cube
from lake.cubes.publish import publish, recover
from lake.cubes.scans import ScanRecord
from lake.cubes.static import finish_static, is_static, plan_static, recover_static
from lake.errors import SpecError
from lake.flows import Flow
from lake.flows.cluster import worker_count
from lake.flows.gather import Progress, gather, quiet, tree_size
from lake.registry import cube_reader
from lake.report import DatasetReport
from lake.sourcefiles import Listed, listed
from lake.spec import LAYOUTS, check_dataset_id

if TYPE_CHECKING:
    from distributed import Client, Future

    from lake.cubes.blocks import ArrayRef
    from lake.cubes.plan import CubePlan, LayoutWork
    from lake.cubes.source import CubeReader, SourceFile
    from lake.spec import Dataset
    from lake.storage import Root


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
    replaced: dict[str, int] = field(default_factory=dict)
    """Published time steps rewritten from newer source files, by layout."""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    """What the user should know: variables left out of the cube, and why."""
    static: bool = False
    """A cube without a time axis (its one layout counts one "step" when it is written)."""

    def report(self) -> DatasetReport:
        return DatasetReport(
            self.dataset, "cube", self.files_read, self.bytes_in, self.bytes_out, self.ntime,
            dict(self.added), self.seconds, self, list(self.notes),
        )  # fmt: skip


CUBE_MEMORY_FIX = "lower `chunking.shard_mb` in the spec (each task holds one shard)"


def submit_writes(client: Client, plan: CubePlan, reader: CubeReader) -> list[Future[Any]]:
    """One task per shard-aligned block; time-series blocks wait for the maps blocks they read."""
    assert plan.index is not None
    source_feed = SourceFeed(reader, plan.index)
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
            for region in block_regions(target, work.published_ntime, work.replaced):
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
                    work.replaced,
                    deps,
                    pure=False,
                )
                futures.append(future)
                if work.layout == "maps" and "time" in region:
                    maps_blocks.setdefault(name, []).append((region["time"], future))
    return futures


def _write(
    target: Any, region: Any, feed: Any, committed: Any, ntime: int, replaced: Any, deps: Any
) -> Written:
    return write_block(target, region, feed, committed, ntime, replaced)


@dataclass
class Scanned:
    """The source files of one build and what their scans found, in URL order."""

    files: list[Listed]
    infos: list[SourceFile]
    record: ScanRecord
    rescanned: int
    reader: CubeReader
    """The reader that scanned them, which the writes read through."""

    def remember(self, root: Root, dataset_id: str) -> None:
        """Record these scans for the next build (only if they differ from the record)."""
        scans.write(root, dataset_id, self.record, self.files,
                    {info.url: info for info in self.infos})  # fmt: skip


def scan_and_plan(
    client: Client, root: Root, dataset: Dataset, progress: Progress = quiet
) -> tuple[CubePlan, Scanned]:
    """Scan the sources on the workers and plan what a build would write (writes nothing).

    Files whose scan the dataset's record holds (same URL, size and version) are not
    opened again: see :mod:`lake.cubes.scans`.
    """
    cube = dataset.cube
    assert cube is not None
    reader = cube_reader(dataset)
    files = [listed(url, info) for url, info in reader.list_files().items()]
    record = scans.read(root, dataset.id, cube.variables, cube.time)
    found, rescan = record.reuse(files)
    # A few batches per worker: thousands of one-file tasks would cost more to schedule
    # than to run.
    workers = worker_count(client)
    size = max(1, min(64, len(rescan) // (4 * workers)))
    batches = [[(f.url, f.size) for f in rescan[i : i + size]]
               for i in range(0, len(rescan), size)]  # fmt: skip
    futures = client.map(_scan, [reader] * len(batches), batches, pure=False)
    for batch in gather(client, futures, f"{dataset.id}: scan", progress, CUBE_MEMORY_FIX):
        found.update((info.url, info) for info in batch)
    infos = [found[f.url] for f in files]
    scanned = Scanned(files, infos, record, len(rescan), reader)
    if is_static(infos):
        return plan_static(root, dataset, infos[0], files[0].key, reader), scanned
    keys = {f.url: f.key for f in files}
    return plan_cube(root, dataset, infos, reader, keys), scanned


def _scan(reader: CubeReader, batch: list[tuple[str, int | None]]) -> list[SourceFile]:
    return reader.scan(batch)


def dry_run_cube(
    client: Client, root: Root, dataset: Dataset, full_refresh: bool = False
) -> list[str]:
    """What a build of this cube would read and write."""
    plan, _ = scan_and_plan(client, root, dataset)
    source = f"{plan.files_found} files found"
    if plan.empty or plan.index is None:
        return [dataset.id, "cube", source, "nothing new", "nothing"]
    read = f"{len(plan.index.files)} files, {plan.ntime} time steps"
    write = ", ".join(
        (
            f"{w.layout}: the whole static layer" + (" (replacing it)" if w.replaces else "")
            if w.source_key
            else f"{w.layout}: " + _steps_written(w, plan.ntime)
        )
        + ", "
        f"{sum(_blocks(t, w) for t in w.targets.values())} shard blocks"
        for w in plan.layouts
    )
    return [dataset.id, "cube", source, read, write]


def build_cube(
    client: Client,
    root: Root,
    dataset: Dataset,
    progress: Progress = quiet,
    full_refresh: bool = False,
) -> CubeResult:
    """Build or extend every layout of one cube dataset; publish only if all blocks succeed.

    (``full_refresh`` concerns tables: a cube is always extended from what is published.)
    """
    started = time.perf_counter()
    cube = dataset.cube
    assert cube is not None
    result = CubeResult(dataset.id)
    root.remove_partials(dataset.id)
    for layout in LAYOUTS:
        recover(root, layout_group(dataset.id, layout))
    recover_static(root, dataset.id)
    plan, scanned = scan_and_plan(client, root, dataset, progress)
    result.files_found = plan.files_found
    result.files_scanned = scanned.rescanned
    result.static = is_static(scanned.infos)
    result.ntime = plan.ntime
    dropped = sorted({name for info in scanned.infos for name in info.dropped})
    if dataset.axis_siblings:
        result.notes.append(
            f"{dataset.id}: the cube along {cube.time}, one of its files' time axes; the "
            f"others are {', '.join(dataset.axis_siblings)}"
        )
    elif dropped:
        result.notes.append(
            f"{dataset.id}: left out {len(dropped)} variable(s) along other time axes than "
            f"{cube.time}: {', '.join(dropped)}; build them as another dataset with their "
            "own `cube.time`"
        )
    if not plan.empty:
        assert plan.index is not None
        futures = submit_writes(client, plan, scanned.reader)
        written = gather(client, futures, f"{dataset.id}: write", progress, CUBE_MEMORY_FIX)
        for work in plan.layouts:
            publish(root, work.group, work.documents, [w for w in written if w.group == work.group])
            result.added[work.layout] = plan.ntime - work.published_ntime
            if work.replaced:
                result.replaced[work.layout] = work.replaced_steps
            if work.source_key is not None:  # a static layer, written whole: one "step"
                finish_static(root, work.group, work.replaces, work.source_key)
                result.added[work.layout] = 1
        result.files_read = len(plan.index.files)
        read = set(plan.index.files)
        result.bytes_in = sum(info.size for info in scanned.infos if info.url in read)
        # Only a build that published something writes: a rerun with no new input writes
        # nothing at all, and its scans are recorded by the next append.
        scanned.remember(root, dataset.id)
    if plan.steps is not None and (not plan.empty or plan.adopt):
        steps.write(root, dataset.id, plan.steps)
    if result.replaced:
        most = max(result.replaced.values())
        result.notes.append(f"{dataset.id}: replaced {most} published time step(s) with "
                            "those of newer source files")  # fmt: skip
    result.bytes_out = tree_size(root, dataset.id)
    result.seconds = time.perf_counter() - started
    return result


def _blocks(target: ArrayRef, work: LayoutWork) -> int:
    return len(list(block_regions(target, work.published_ntime, work.replaced)))


def _steps_written(work: LayoutWork, ntime: int) -> str:
    parts = []
    if work.published_ntime < ntime:
        parts.append(f"steps {work.published_ntime}..{ntime - 1}")
    if work.replaced:
        runs = ", ".join(f"{lo}..{hi - 1}" for lo, hi in work.replaced)
        parts.append(f"replacing steps {runs}")
    return "; ".join(parts)


def _nothing_to_tidy(root: Root, dataset_id: str) -> None:
    """A cube keeps nothing the catalogue pointed at: its publish replaces in place."""


def source_bytes(dataset: Dataset) -> int | None:
    """The listed size of a cube's source files (None if a listing gives no size)."""
    files = [listed(url, info) for url, info in cube_reader(dataset).list_files().items()]
    sizes = [f.size for f in files]
    return None if None in sizes else sum(s for s in sizes if s is not None)


def per_time_axis(dataset: Dataset) -> list[Dataset]:
    """The cubes a dataset builds: one per time axis with data of its first source file when
    the spec names no axis (OceanSITES moorings: ``TIME``, ``TIME_HR``, ``TIME_DY``), else
    itself (an axis with no data along it builds nothing)."""
    cube = dataset.cube
    assert cube is not None
    if cube.time is not None:
        return [dataset]
    reader = cube_reader(dataset)
    first = next((url for url, info in reader.list_files().items() if info is not None), None)
    if first is None:
        return [dataset]  # the build says that no file matches, or which one is missing
    axes = reader.time_axes(first)
    with_data = [axis for axis, names in axes.items() if names]
    if len(axes) <= 1 or not with_data:
        return [dataset]
    if len(with_data) == 1:
        return [dataset.model_copy(update={"cube": cube.model_copy(update={"time": with_data[0]})})]
    return _along_each(dataset, with_data)


def _along_each(dataset: Dataset, axes: list[str]) -> list[Dataset]:
    """One cube dataset per time axis, each with ``cube.time`` set: ``<id>-<axis>``, the
    axis name in lower case (``mooring-time_hr``), titled with the axis."""
    cube = dataset.cube
    assert cube is not None
    ids = [f"{dataset.id}-{_axis_segment(axis)}" for axis in axes]
    out = []
    for axis, new_id in zip(axes, ids, strict=True):
        try:
            check_dataset_id(new_id)
        except ValueError as exc:
            raise SpecError(
                f"datasets.{dataset.id}.cube",
                f"its files have several time axes ({', '.join(axes)}), and the dataset of "
                f"{axis} cannot be named: {exc}",
                f"shorten the dataset id, or name one axis (`cube: {{time: {axes[0]}}}`)",
            ) from None
        title = f"{dataset.metadata.title or dataset.id} (along {axis})"
        one = dataset.model_copy(update={
            "id": new_id,
            "cube": cube.model_copy(update={"time": axis}),
            "metadata": dataset.metadata.model_copy(update={"title": title}),
        })  # fmt: skip
        one._axis_siblings = tuple(i for i in ids if i != new_id)
        out.append(one)
    return out


def _axis_segment(axis: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", axis.lower()).strip("._-") or "time"


FLOW = Flow(build_cube, dry_run_cube, _nothing_to_tidy, source_bytes, per_time_axis)
