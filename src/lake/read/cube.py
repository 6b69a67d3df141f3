"""A cube cut to a request: index ranges from its coordinates, the layout whose chunks the
request touches least from the chunk grid the catalogue publishes, opened lazily.

The rule is the one the Copernicus Marine toolbox applies to its ``timeChunked`` and
``geoChunked`` stores: count, per layout, the inner chunks (a reader's unit, one range
request each) that hold the requested cells of every requested variable, and read the
layout with fewer; a tie goes to the catalogue's first layout. Coordinates (a few kB) are
read from the first layout; no data is read to decide.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lake.cubes.coords import geographic
from lake.errors import SpecError
from lake.read.published import LakeDataset, dataset_of_kind
from lake.read.request import Request, request

if TYPE_CHECKING:
    import xarray as xr

    from lake.storage import Root

Indexer = slice | np.ndarray | int
DASK_CHUNK_BYTES = 64 * 2**20
"""A dask chunk of the opened cube: whole inner chunks, up to about this many bytes."""
_ITEM_SIZES = {"int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2, "int32": 4,
               "uint32": 4, "float32": 4, "int64": 8, "uint64": 8, "float64": 8}  # fmt: skip


@dataclass(frozen=True)
class LayoutCost:
    """What reading a request from one layout costs: inner chunks (range requests) and
    their uncompressed bytes."""

    layout: str
    chunks: int
    bytes: int


@dataclass(frozen=True)
class CubeSelection:
    """A request resolved against a cube: the layout to read and the cells to take."""

    dataset: LakeDataset
    layout: str
    costs: list[LayoutCost]
    variables: list[str]
    indexers: dict[str, Indexer]
    sizes: dict[str, int]
    """The selected length along each dimension (a point's dimensions are gone)."""
    cell: dict[str, float] = field(default_factory=dict)
    """The coordinates of the nearest cell, for a point request."""
    opened: Any = field(default=None, repr=False, compare=False)
    """The layout opened to resolve the request (reused when it is the one chosen)."""

    @property
    def cost(self) -> LayoutCost:
        return next(c for c in self.costs if c.layout == self.layout)


def open_layout(dataset: LakeDataset, layout: str) -> xr.Dataset:
    """A layout opened lazily from its consolidated metadata, without dask (``cache=False``:
    each selection reads only its own cells)."""
    import xarray as xr

    store = dataset.root.zarr_store(dataset.id, f"{layout}.zarr", read_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=xr.SerializationWarning)
        opened: xr.Dataset = xr.open_dataset(
            store,  # type: ignore[arg-type]
            engine="zarr", consolidated=True, zarr_format=3, chunks=None, cache=False,
        )  # fmt: skip
    return opened


def _positions(indexer: Indexer | None, size: int) -> np.ndarray:
    if indexer is None:
        return np.arange(size)
    if isinstance(indexer, slice):
        return np.arange(size)[indexer]
    return np.atleast_1d(np.asarray(indexer))


def _chunks_along(positions: np.ndarray, chunk: int) -> int:
    return int(np.unique(positions // max(chunk, 1)).size)


def layout_cost(layout: str, asset: dict[str, Any], ds: xr.Dataset, variables: list[str],
                indexers: dict[str, Indexer]) -> LayoutCost:  # fmt: skip
    """The inner chunks (and their bytes) of ``variables`` that ``indexers`` touch in one
    layout, from the chunk grid of its asset in the catalogue."""
    described = asset.get("cube:variables", {})
    chunks = nbytes = 0
    for name in variables:
        var = ds[name]
        grid = described.get(name, {}).get("chunks") or var.encoding.get("chunks") or var.shape
        count, cells = 1, 1
        for dim, size, chunk in zip(var.dims, var.shape, grid, strict=False):
            count *= _chunks_along(_positions(indexers.get(str(dim)), size), int(chunk))
            cells *= int(chunk)
        item = _ITEM_SIZES.get(str(described.get(name, {}).get("data_type")), var.dtype.itemsize)
        chunks += count
        nbytes += count * cells * item
    return LayoutCost(layout, chunks, nbytes)


def _nothing(dataset: LakeDataset, what: str, have: str) -> SpecError:
    return SpecError(f"the request on {dataset.id!r}", f"selects nothing: {what}",
                     f"ask within what the cube holds ({have})")  # fmt: skip


def _as_indexer(positions: np.ndarray) -> Indexer:
    """A slice for a contiguous run, else the positions."""
    if positions.size and np.all(np.diff(positions) == 1):
        return slice(int(positions[0]), int(positions[-1]) + 1)
    return positions


def _time_indexer(dataset: LakeDataset, ds: xr.Dataset, bounds: tuple[Any, Any]) -> Indexer:
    if "time" not in ds.dims:
        raise SpecError(f"the request on {dataset.id!r}", "asks for a time, and the cube has no "
                        "time axis (a static layer)", "leave out the time")  # fmt: skip
    index = ds.indexes["time"]
    start, end = bounds
    have = f"time {index[0]} to {index[-1]}"
    try:
        found = index.slice_indexer(start, end)
    except (KeyError, ValueError, TypeError) as exc:
        raise SpecError(f"time {start}/{end}", f"cannot be compared with the cube's times ({exc})",
                        "give ISO 8601 dates, e.g. 2020-01-01/2020-12-31") from None  # fmt: skip
    positions = np.arange(len(index))[found]
    if positions.size == 0 and start is not None and start == end:
        # One instant between steps (or finer than them): the nearest step.
        return _nearest_step(index, start)
    if positions.size == 0:
        raise _nothing(dataset, f"no time step in {start or '...'}/{end or '...'}", have)
    return _as_indexer(positions)


def _nearest_step(index: Any, when: Any) -> int:
    import pandas as pd

    stamp = pd.Timestamp(when)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    if isinstance(index, pd.DatetimeIndex):
        target: Any = stamp
    else:  # a CFTimeIndex: the same date in the cube's calendar
        target = index.date_type(stamp.year, stamp.month, stamp.day, stamp.hour,
                                 stamp.minute, stamp.second)  # fmt: skip
    return int(np.argmin(np.abs(np.asarray((index - target).total_seconds()))))


def _depth_indexer(dataset: LakeDataset, ds: xr.Dataset, bounds: tuple[Any, Any]) -> Indexer:
    if "depth" not in ds.dims:
        raise SpecError(f"the request on {dataset.id!r}", "asks for a depth, and the cube has "
                        "no depth axis", "leave out the depth")  # fmt: skip
    values = np.asarray(ds["depth"].values, dtype=np.float64)
    low, high = bounds
    if low is not None and low == high:
        return int(np.nanargmin(np.abs(values - low)))
    mask = np.ones(values.shape, dtype=bool)
    if low is not None:
        mask &= values >= low
    if high is not None:
        mask &= values <= high
    if not mask.any():
        have = f"depth {np.nanmin(values):g} to {np.nanmax(values):g}"
        raise _nothing(dataset, f"no depth level in {low}/{high}", have)
    return _as_indexer(np.flatnonzero(mask))


def _geographic(ds: xr.Dataset, kind: str) -> xr.DataArray | None:
    found = [ds[str(n)] for n, v in ds.variables.items() if geographic(v) == kind]
    return max(found, key=lambda v: v.ndim) if found else None


def _wrapped(lon: np.ndarray, west: float) -> np.ndarray:
    """Degrees east of ``west``, in 0..360, for longitudes in any convention."""
    return np.mod(lon.astype(np.float64) - west, 360.0)


def _space_indexers(dataset: LakeDataset, ds: xr.Dataset, req: Request,
                    cell: dict[str, float]) -> dict[str, Indexer]:  # fmt: skip
    assert req.bbox is not None
    lat, lon = _geographic(ds, "latitude"), _geographic(ds, "longitude")
    if lat is None or lon is None:
        raise SpecError(f"the request on {dataset.id!r}", "has a bbox, and the cube has no "
                        "latitude and longitude coordinates", "leave out the bbox")  # fmt: skip
    import xarray as xr

    lat, lon = xr.broadcast(lat.astype(np.float64), lon.astype(np.float64))
    dims = [str(d) for d in lat.dims]
    w, s, e, n = req.bbox
    if req.point is not None:
        # The nearest cell, by distance on the sphere's tangent plane at the point.
        dx = (_wrapped(lon.values, w) + 180.0) % 360.0 - 180.0
        dist = (lat.values - s) ** 2 + (dx * math.cos(math.radians(s))) ** 2
        if not np.isfinite(dist).any():
            raise _nothing(dataset, "no cell has a position", "a bbox needs positions")
        at = np.unravel_index(int(np.nanargmin(dist)), dist.shape) if dist.ndim else ()
        cell.update(latitude=float(lat.values[at]), longitude=float(lon.values[at]))
        return {dim: int(i) for dim, i in zip(dims, at, strict=True)}
    width = (e - w) % 360.0 or (360.0 if e != w else 0.0)
    mask = (lat.values >= s) & (lat.values <= n) & (_wrapped(lon.values, w) <= width + 1e-9)
    if not mask.any():
        have = (f"latitude {np.nanmin(lat.values):g} to {np.nanmax(lat.values):g}, "
                f"longitude {np.nanmin(lon.values):g} to {np.nanmax(lon.values):g}")  # fmt: skip
        raise _nothing(dataset, f"no cell in the bbox {w:g},{s:g},{e:g},{n:g}", have)
    out: dict[str, Indexer] = {}
    for axis, dim in enumerate(dims):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        positions = np.flatnonzero(mask.any(axis=others) if others else mask)
        if dim == str(lon.dims[axis]) and lon.ndim == 1 and positions.size > 1:
            # Across the antimeridian of a -180..180 grid: west to east, not by index.
            positions = positions[np.argsort(_wrapped(lon.values[positions], w), kind="stable")]
        if positions.size < mask.shape[axis]:
            out[dim] = _as_indexer(positions)
    return out


def _variables(dataset: LakeDataset, ds: xr.Dataset, wanted: list[str] | None) -> list[str]:
    names = [str(n) for n in ds.data_vars]
    if wanted is None:
        return names
    unknown = [v for v in wanted if v not in ds.variables]
    if unknown:
        raise SpecError(f"variables {', '.join(unknown)}", f"are not in {dataset.id!r}",
                        f"use some of: {', '.join(names)}")  # fmt: skip
    return [v for v in wanted if v in ds.data_vars] or wanted


def select_cube(root: Root | str, dataset: str | LakeDataset, req: Request,
                storage_options: dict[str, Any] | None = None) -> CubeSelection:  # fmt: skip
    """Resolve ``req`` against the cube ``dataset``: cells, costs per layout, the choice."""
    found = dataset_of_kind(root, dataset, "cube", storage_options)
    layouts = found.layouts()
    first = open_layout(found, next(iter(layouts)))
    variables = _variables(found, first, req.variables)
    indexers: dict[str, Indexer] = {}
    cell: dict[str, float] = {}
    if req.time is not None:
        indexers["time"] = _time_indexer(found, first, req.time)
    if req.depth is not None:
        indexers["depth"] = _depth_indexer(found, first, req.depth)
    if req.bbox is not None:
        indexers.update(_space_indexers(found, first, req, cell))
    costs = [layout_cost(name, asset, first, variables, indexers)
             for name, asset in layouts.items()]  # fmt: skip
    best = min(costs, key=lambda c: (c.chunks, c.bytes))
    sizes = {}
    for dim, size in first.sizes.items():
        selected = indexers.get(str(dim))
        if not isinstance(selected, int):
            sizes[str(dim)] = int(_positions(selected, size).size)
    first_name = next(iter(layouts))
    return CubeSelection(found, best.layout, costs, variables, indexers, sizes, cell,
                         {first_name: first})  # fmt: skip


def _dask_chunks(ds: xr.Dataset, selection: CubeSelection) -> dict[str, Any]:
    """Dask chunks on the layout's inner-chunk grid (no dask chunk splits an inner chunk),
    grown along the leading dimension up to :data:`DASK_CHUNK_BYTES`. ``ds`` is the layout
    before the selection."""
    name = selection.variables[0]
    asset = selection.dataset.layouts()[selection.layout].get("cube:variables", {})
    grid = asset.get(name, {}).get("chunks") or ds[name].encoding.get("chunks")
    if not grid:
        return {}
    dims = [str(d) for d in ds[name].dims]
    inner = [int(c) for c in grid]
    item = max(ds[v].dtype.itemsize for v in selection.variables)
    grow = max(1, DASK_CHUNK_BYTES // max(math.prod(inner) * item, 1))
    out: dict[str, Any] = {}
    for position, (dim, stored) in enumerate(zip(dims, inner, strict=False)):
        indexer = selection.indexers.get(dim)
        if isinstance(indexer, int) or dim not in selection.sizes:
            continue
        chunk = stored * (grow if position == 0 else 1)
        size = selection.sizes[dim]
        if isinstance(indexer, slice) and indexer.start:
            # The first dask chunk ends where a stored chunk does; the others are whole.
            first = min(size, chunk - indexer.start % chunk)
            whole, rest = divmod(size - first, chunk)
            out[dim] = (first, *([chunk] * whole), *([rest] if rest else []))
        else:
            out[dim] = min(chunk, size)
    return out


def open_selection(selection: CubeSelection) -> xr.Dataset:
    """The selected cells of the chosen layout, as a lazy dask-backed dataset."""
    opened = selection.opened or {}
    ds = opened.get(selection.layout) or open_layout(selection.dataset, selection.layout)
    chunks = _dask_chunks(ds, selection)
    cut = ds[selection.variables].isel(selection.indexers)
    return cut.chunk({d: c for d, c in chunks.items() if d in cut.dims})


def open_cube(root: Root | str, dataset: str, *, bbox: Any = None, time: Any = None,
              depth: Any = None, variables: Any = None,
              storage_options: dict[str, Any] | None = None) -> xr.Dataset:  # fmt: skip
    """A cube of the lake at ``root`` (a folder or any fsspec URL), cut to a request, lazy.

    ``bbox`` is ``(west, south, east, north)`` in degrees (or ``"W,S,E,N"``; west > east
    crosses the antimeridian; a point ``(x, y, x, y)`` gives the nearest cell's series);
    ``time`` is ``(start, end)`` or ``"START/END"`` (ISO 8601, either end open; one date
    gives its steps, or the nearest step); ``depth`` is ``(min, max)`` or one level (the
    nearest); ``variables`` names the data variables. The layout read is the one whose
    chunks the request touches least (:func:`select_cube` tells which, and what it costs).
    """
    return open_selection(select_cube(root, dataset, request(bbox, time, depth, variables),
                                      storage_options))  # fmt: skip
