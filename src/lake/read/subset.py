"""``lake subset``: a cube or a table of a published lake, cut to a request, as one file.

Cubes go to NetCDF-4 (``.nc``), Zarr v3 (``.zarr``) or CSV (``.csv``); tables to
GeoParquet (``.parquet``), CSV (``.csv``) or GeoJSON (``.geojson``). The format is the
output's suffix. A dry run resolves the request (the layout, chunks and bytes a cube
read takes; the files, row groups and bytes of a table) and writes nothing.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING, Any

from lake.errors import SpecError, TargetError
from lake.read import cube as cubes
from lake.read import table as tables
from lake.read.request import request

if TYPE_CHECKING:
    from lake.read.cubefile import Progress
    from lake.storage import Root

CUBE_FORMATS = {".nc": "NetCDF-4", ".zarr": "Zarr v3", ".csv": "CSV"}
TABLE_FORMATS = {".parquet": "GeoParquet 1.1", ".csv": "CSV", ".geojson": "GeoJSON"}


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class SubsetPlan:
    """What a subset reads, before it reads it."""

    dataset: str
    kind: str
    output: str
    format: str
    reads: str
    """The layout (or files) chosen, and the chunks (or row groups) and bytes it reads."""
    details: list[str] = field(default_factory=list)
    """The other layouts' costs, a point's cell, the selected shape."""
    selection: Any = field(default=None, repr=False, compare=False)

    def lines(self) -> list[str]:
        return [f"{self.dataset} ({self.kind}) → {self.output} ({self.format})",
                f"reads {self.reads}", *self.details]  # fmt: skip


@dataclass(frozen=True)
class SubsetResult:
    plan: SubsetPlan
    rows: int | None
    """Rows written (tables, CSV), else None."""
    bytes: int
    seconds: float


def _format(output: str, kind: str) -> str:
    suffix = os.path.splitext(output.rstrip("/"))[1].lower()
    formats = CUBE_FORMATS if kind == "cube" else TABLE_FORMATS
    if suffix not in formats:
        raise SpecError(f"output {output!r}", f"has no format a {kind} is written to",
                        f"end it with one of {', '.join(formats)}")  # fmt: skip
    return suffix


def _cube_plan(selection: cubes.CubeSelection, output: str, suffix: str) -> SubsetPlan:
    cost = selection.cost
    others = [f"  {c.layout}: {_count(c.chunks, 'chunk')}, {_mb(c.bytes)}" for c in selection.costs]
    details = ["per layout (inner chunks the request touches, uncompressed bytes):", *others]
    shape = " × ".join(f"{d} {n}" for d, n in selection.sizes.items())
    details.append(f"selects {shape or 'one cell'} of {', '.join(selection.variables)}")
    if selection.cell:
        details.append(
            "nearest cell: " + ", ".join(f"{k} {v:g}" for k, v in selection.cell.items())
        )
    reads = f"{cost.layout}.zarr: {_count(cost.chunks, 'chunk')}, {_mb(cost.bytes)} uncompressed"
    return SubsetPlan(selection.dataset.id, "cube", output, CUBE_FORMATS[suffix], reads,
                      details, selection)  # fmt: skip


def _table_plan(selection: tables.TableSelection, output: str, suffix: str) -> SubsetPlan:
    groups, nbytes = tables.row_groups(selection) if selection.files else (0, 0)
    reads = (f"{len(selection.files):,} of {_count(selection.listed, 'file')}, "
             f"{_count(groups, 'row group')}, {_mb(nbytes)}")  # fmt: skip
    details = [f"rows in those files: {selection.rows:,} (the request keeps those inside it)"]
    return SubsetPlan(selection.dataset.id, "table", output, TABLE_FORMATS[suffix], reads,
                      details, selection)  # fmt: skip


def plan_subset(root: Root | str, dataset: str, output: str, *, bbox: Any = None,
                time: Any = None, depth: Any = None, variables: Any = None,
                storage_options: dict[str, Any] | None = None) -> SubsetPlan:  # fmt: skip
    """Resolve a subset without reading data: what :func:`subset` would read and write."""
    from lake.read.published import find_dataset, lake_root

    lake = lake_root(root, storage_options)
    found = find_dataset(lake, dataset)  # read once: the selection takes it as found
    suffix = _format(output, found.kind)
    if found.kind == "cube":
        selection = cubes.select_cube(lake, found, request(bbox, time, depth, variables))
        return _cube_plan(selection, output, suffix)
    if variables is not None:
        raise SpecError("--variables", "name a cube's variables; a table has columns",
                        "leave it out (a subset of a table keeps every column)")  # fmt: skip
    selected = tables.select_table(lake, found, request(bbox, time, depth))
    return _table_plan(selected, output, suffix)


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def _write(plan: SubsetPlan, tmp: str, progress: Progress | None) -> int | None:
    from lake.read import cubefile, tablefile

    suffix = _format(plan.output, plan.kind)
    if plan.kind == "cube":
        ds = cubes.open_selection(plan.selection)
        if suffix == ".nc":
            cubefile.write_netcdf(ds, tmp, progress)
        elif suffix == ".zarr":
            cubefile.write_zarr(ds, tmp, progress)
        else:
            return cubefile.write_csv(ds, tmp, progress)
        return None
    opened = tables.open_selection(plan.selection)
    writer = {".parquet": tablefile.write_parquet, ".csv": tablefile.write_csv,
              ".geojson": tablefile.write_geojson}[suffix]  # fmt: skip
    return writer(opened, plan.selection, tmp, progress)


def subset(root: Root | str, dataset: str, output: str, *, bbox: Any = None,
           time: Any = None, depth: Any = None, variables: Any = None,
           overwrite: bool = False, progress: Progress | None = None,
           storage_options: dict[str, Any] | None = None) -> SubsetResult:  # fmt: skip
    """Write ``dataset`` of the lake at ``root``, cut to the request, to the local file
    ``output`` (its suffix names the format). Nothing is left at ``output`` unless the
    whole file was written; an existing file is kept unless ``overwrite``."""
    plan = plan_subset(root, dataset, output, bbox=bbox, time=time, depth=depth,
                       variables=variables, storage_options=storage_options)  # fmt: skip
    return write_subset(plan, overwrite=overwrite, progress=progress)


def write_subset(plan: SubsetPlan, *, overwrite: bool = False,
                 progress: Progress | None = None) -> SubsetResult:  # fmt: skip
    """Write what :func:`plan_subset` planned (see :func:`subset`)."""
    started = monotonic()
    output = plan.output
    final = os.path.abspath(output.rstrip("/"))
    if os.path.exists(final) and not overwrite:
        raise TargetError(f"output {output!r}", "exists",
                          "remove it, choose another name, or pass --overwrite")  # fmt: skip
    folder = os.path.dirname(final)
    if not os.path.isdir(folder):
        raise TargetError(f"output {output!r}", f"is in a folder that does not exist ({folder})",
                          "create the folder first")  # fmt: skip
    base, suffix = os.path.splitext(final)
    tmp = f"{base}.partial-{uuid.uuid4().hex[:8]}{suffix}"
    try:
        rows = _write(plan, tmp, progress)
        _remove(final)
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise
    return SubsetResult(plan, rows, _size(final), monotonic() - started)
