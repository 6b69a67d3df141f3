"""The public Python API: build, plan, verify, validate and list a lake.

The ``lake`` command line is a thin wrapper over these functions; notebooks and pipelines
(Airflow, Prefect, Digital Twin workflows) call them directly::

    import lake
    report = lake.build("lake.yaml")             # or a Spec from lake.load_spec
    for d in report.datasets:
        print(d.id, d.kind, d.read, d.added, f"{d.seconds:.1f} s")
    assert lake.verify(report.root).ok

Errors are exceptions: a :class:`lake.errors.LakeError` subclass names the input, the fault
and the fix (``SpecError``, ``SourceError``, ``TargetError``); nothing is half-published.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lake.errors import SpecError
from lake.report import DatasetReport
from lake.spec import Spec, load_spec
from lake.storage import Root

if TYPE_CHECKING:
    from lake.report import Report
    from lake.spec import Dataset
    from lake.stac.catalog import CatalogueResult
    from lake.stac.listing import DatasetListing

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)`` while a build's tasks finish."""


@dataclass(frozen=True)
class BuildReport:
    """What :func:`build` did: per dataset, the catalogue, the whole time."""

    root: str
    """The lake's root URL (credentials removed)."""
    datasets: list[DatasetReport]
    catalogue: CatalogueResult
    seconds: float
    notes: list[str] = field(default_factory=list)
    """About the build as a whole (a stale lease taken over)."""


@dataclass(frozen=True)
class DatasetPlan:
    """What a build of one dataset would read and write (:func:`plan`)."""

    id: str
    kind: str
    source: str
    read: str
    write: str


def _spec(spec_or_path: Spec | str | Path) -> tuple[Spec, str]:
    spec = spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path)
    return spec, spec._source


def _root(root: Root | str, storage_options: dict[str, Any] | None) -> Root:
    return root if isinstance(root, Root) else Root(str(root), dict(storage_options or {}))


def _selected(
    spec: Spec, only: str | Sequence[str] | None, built_as: dict[str, list[str]]
) -> list[Dataset]:
    """The datasets ``only`` names (a spec dataset built as several names them all)."""
    if only is None:
        return list(spec.datasets)
    ids = [i for name in ([only] if isinstance(only, str) else only)
           for i in built_as.get(name, [name])]  # fmt: skip
    return [spec.dataset(i) for i in dict.fromkeys(ids)]


def _expanded(spec: Spec, source: str) -> tuple[Spec, dict[str, list[str]]]:
    """The spec with each dataset replaced by those it builds (a cube whose files have
    several time axes builds one per axis), and which spec ids became which."""
    from lake.flows import flow_of

    datasets: list[Dataset] = []
    built_as: dict[str, list[str]] = {}
    for dataset in spec.datasets:
        built = flow_of(dataset).expand(dataset)
        datasets.extend(built)
        if [b.id for b in built] != [dataset.id]:
            built_as[dataset.id] = [b.id for b in built]
    if all(a is b for a, b in zip(datasets, spec.datasets, strict=False)) and not built_as:
        return spec, built_as
    ids = [d.id for d in datasets]
    for parent, children in built_as.items():
        for child in children:
            if ids.count(child) > 1:
                raise SpecError(
                    f"{source}: datasets.{parent}",
                    f"builds a cube per time axis of its files, and {child!r} is also the id "
                    "of another dataset",
                    f"rename that dataset, or name one time axis in {parent}'s `cube.time`",
                )
    return spec.model_copy(update={"datasets": datasets}), built_as


SMALL_BUILD_BYTES = 128 * 1024 * 1024
"""Sources up to this size (every dataset a cube) are built by one worker in this process:
starting worker processes would take longer than the build (measured in BENCHMARKS.md)."""


@dataclass(frozen=True)
class _Prepared:
    spec: Spec
    datasets: list[Dataset]
    root: Root
    small: bool
    """Build in this process (see :data:`SMALL_BUILD_BYTES`)."""


def _prepare(
    spec_or_path: Spec | str | Path,
    only: str | Sequence[str] | None,
    scheduler: str | None,
    workers: int | None,
) -> _Prepared:
    """The spec (checked for what the catalogue needs), its datasets to build, its root,
    and whether the build is small enough to run in this process."""
    spec, source = _spec(spec_or_path)
    spec.check_catalogue(source, described_by_source=False)  # before any source is read
    spec, built_as = _expanded(spec, source)
    spec.check_catalogue(source)
    datasets = _selected(spec, only, built_as)
    small = False
    if scheduler is None and workers is None:
        from lake.flows import flow_of

        sizes = [flow_of(d).source_bytes(d) for d in datasets]
        small = None not in sizes and sum(s for s in sizes if s is not None) <= SMALL_BUILD_BYTES
        if not small:
            from lake.flows.processes import start_worker_server

            start_worker_server()  # the workers' imports and ours proceed side by side
    return _Prepared(spec, datasets, Root(spec.root, spec.storage_options), small)


def _preload(datasets: list[Dataset]) -> list[str]:
    """The flow modules a build's workers need, imported as they start."""
    from lake.flows import FLOW_MODULES

    return sorted({FLOW_MODULES[d.kind] for d in datasets})


def _import_flows() -> None:
    """The build's own imports, while the cluster starts: the flows now (the first step,
    a cube's scan or a table's plan, needs them), and in a thread of their own what only
    later steps need (dask.array for a cube's plan, matplotlib and pystac for the
    catalogue): 1.4 s of imports that the main thread would otherwise finish before the
    first task could start, done while the workers scan (measured in BENCHMARKS.md)."""
    import lake.flows.cubes
    import lake.flows.tables  # noqa: F401

    threading.Thread(target=_import_later, name="lake-imports", daemon=True).start()


def _import_later() -> None:
    """What later steps of a build import (an import in progress in another thread is
    waited for, never run twice). A failure here is left to the step that needs the
    module, which imports it again and reports it."""
    try:
        import dask.array  # noqa: F401  (the cube plan's templates; workers do without)
        import matplotlib.figure  # noqa: F401  (the thumbnails, drawn after the builds)

        import lake.stac.catalog  # noqa: F401
        from lake.stac import fair

        fair.prepare()
    except Exception:
        pass


@contextmanager
def _progress_bar(progress: bool | Progress) -> Iterator[Progress]:
    """A rich progress bar on stderr for ``True``, the caller's callable, or nothing."""
    from lake.flows.gather import quiet

    if callable(progress):
        yield progress
        return
    if not progress:
        yield quiet
        return
    import sys

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as Bar

    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    with Bar(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=not console.is_terminal,
    ) as bar:  # fmt: skip
        tasks: dict[str, TaskID] = {}

        def show(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield show


@contextmanager
def _telling_what_was_published(reports: list[DatasetReport]) -> Iterator[None]:
    """On a failure, note on the exception which datasets were published before it."""
    try:
        yield
    except BaseException as exc:
        changed = [d.id for d in reports if d.changed]
        if changed:
            exc.add_note(
                f"published before the failure: {', '.join(changed)}; the catalogue may still "
                "describe their previous version, and the next `lake build` rewrites it"
            )
        raise


def build(
    spec_or_path: Spec | str | Path,
    *,
    only: str | Sequence[str] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    full_refresh: bool = False,
    progress: bool | Progress = True,
    debug: bool = False,
    wait: float = 0.0,
) -> BuildReport:
    """Build or update the lake of a spec: every dataset (or ``only`` those), then the
    catalogue, then tidy what the catalogue no longer points at.

    One build at a time writes a lake: the build holds a lease on its root
    (:mod:`lake.lease`). ``wait``: seconds to wait for another build's lease before
    raising :class:`lake.errors.LeaseError` (which names that build); it has then read
    and written nothing of the lake.

    ``scheduler``: the address of an existing Dask scheduler (default: a local cluster of
    ``workers`` processes, one per core). ``full_refresh``: rebuild tables from the whole
    source. ``progress``: a progress bar on stderr, False for none, or a callable
    ``(stage, done, total)``. ``debug``: local workers log the traceback of a failed task.

    Raises :class:`lake.errors.LakeError` on bad input. A failure after some datasets were
    published says which in a note on the exception (``exc.__notes__``); without one,
    nothing was published.
    """
    from lake.lease import Lease

    started = time.perf_counter()
    spec, _ = _spec(spec_or_path)
    lease = Lease(Root(spec.root, spec.storage_options))
    with lease.held(wait):
        report = _build(spec, only, scheduler, workers, full_refresh, progress, debug)
    return BuildReport(report.root, report.datasets, report.catalogue,
                       time.perf_counter() - started, lease.notes)  # fmt: skip


def _build(spec: Spec, only: str | Sequence[str] | None, scheduler: str | None,
           workers: int | None, full_refresh: bool, progress: bool | Progress,
           debug: bool) -> BuildReport:  # fmt: skip
    started = time.perf_counter()
    prepared = _prepare(spec, only, scheduler, workers)
    spec, datasets, root = prepared.spec, prepared.datasets, prepared.root
    root.check_writable()

    from lake.flows.cluster import dask_client

    reports: list[DatasetReport] = []
    with _telling_what_was_published(reports):
        # The catalogue is written in a thread while the cluster shuts down: it needs only
        # the storage, and shutting worker processes down is mostly waiting.
        with (
            ThreadPoolExecutor(1, thread_name_prefix="lake-catalogue") as pool,
            dask_client(
                scheduler, workers, _preload(datasets), _import_flows, debug, prepared.small
            ) as client,
            _progress_bar(progress) as show,
        ):
            from lake.flows import flow_of
            from lake.stac.catalog import write_catalogue

            for dataset in datasets:
                result = flow_of(dataset).build(client, root, dataset, show, full_refresh)
                reports.append(result.report())
            writing = pool.submit(write_catalogue, root, spec, only=[d.id for d in datasets])
        catalogue = writing.result()
        # Only now may a dataset drop what the catalogue pointed at before (a table's
        # replaced files): the published catalogue points at the new version.
        for dataset in datasets:
            flow_of(dataset).tidy(root, dataset.id)
    return BuildReport(root.display, reports, catalogue, time.perf_counter() - started)


def plan(
    spec_or_path: Spec | str | Path,
    *,
    only: str | Sequence[str] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    full_refresh: bool = False,
    debug: bool = False,
) -> list[DatasetPlan]:
    """What :func:`build` would read and write, per dataset (the dry run: writes nothing).

    Scans new source files on the cluster and describes table sources; reads nothing else.
    """
    prepared = _prepare(spec_or_path, only, scheduler, workers)
    datasets, root = prepared.datasets, prepared.root
    from lake.flows.cluster import dask_client

    rows = []
    with dask_client(
        scheduler, workers, _preload(datasets), _import_flows, debug, prepared.small
    ) as client:
        from lake.flows import flow_of

        for dataset in datasets:
            rows.append(flow_of(dataset).dry_run(client, root, dataset, full_refresh))
    return [DatasetPlan(*row) for row in rows]


def verify(root: Root | str, storage_options: dict[str, Any] | None = None) -> Report:
    """Re-read every asset of the lake at ``root``: exists, size and checksum, opens, counts
    and shapes match. ``Report.ok`` is False when there is any problem."""
    from lake.stac.verify import verify_lake

    return verify_lake(_root(root, storage_options))


def validate(
    root: Root | str,
    schemas: str | Path | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Report:
    """Check every catalogue document and GeoParquet file against the official schemas
    (fetched from their URLs, or read from ``schemas``: a folder with ``index.json``)."""
    from lake.report import Report
    from lake.stac.validate import Schemas, validate_lake

    loaded = Schemas(Path(schemas) if schemas else None)
    count, problems = validate_lake(_root(root, storage_options), loaded)
    notes = [f"not checked: the fields of {url}, a schema {schemas}/index.json does not hold"
             for url in sorted(loaded.unchecked)]  # fmt: skip
    return Report(objects=count, problems=list(problems), notes=notes)


def ls(root: Root | str, storage_options: dict[str, Any] | None = None) -> list[DatasetListing]:
    """The lake's datasets (kind, items, rows, size, extents, last update), from its
    catalogue."""
    from lake.stac.listing import list_lake

    return list_lake(_root(root, storage_options))


__all__ = [
    "BuildReport",
    "DatasetPlan",
    "DatasetReport",
    "build",
    "load_spec",
    "ls",
    "plan",
    "validate",
    "verify",
]
