"""A cut cube written to one file: NetCDF-4, Zarr v3 or CSV.

Values are written as the lake stores them (the CF packing, fill values, time units and
calendar of the source), so ``xr.open_dataset`` of the file decodes them to the values of
a direct read. The file is written beside its final path and renamed into place when it
is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while a subset is written."""

CF_ENCODING = ("dtype", "_FillValue", "missing_value", "scale_factor", "add_offset", "units",
               "calendar")  # fmt: skip
"""The encodings that decode a value (the lake's chunking and codecs are not the file's)."""
CSV_CELLS = 2_000_000
"""Cells of each block a CSV is written in."""


def _cf_only(ds: xr.Dataset, netcdf: bool) -> xr.Dataset:
    out = ds.copy()
    for var in out.variables.values():
        kept = {k: v for k, v in var.encoding.items() if k in CF_ENCODING}
        if "dtype" in kept:  # the lake's little-endian type, as the file's native one
            kept["dtype"] = np.dtype(kept["dtype"]).newbyteorder("=")
        if netcdf and var.dtype.kind in "iuf":
            kept.update(zlib=True, complevel=1)  # NetCDF-4's deflate, as data centres publish
        if var.dtype.kind in "OUS":
            kept.pop("_FillValue", None)
        var.encoding = kept
    return out


class _Counting:
    """A dask callback that reports finished tasks."""

    def __init__(self, progress: Progress | None) -> None:
        from dask.callbacks import Callback

        state = {"done": 0, "total": 0}

        def start_state(_dsk: Any, st: dict[str, Any]) -> None:
            state["total"] = sum(len(st[k]) for k in ("ready", "waiting", "running"))

        def posttask(*_: Any) -> None:
            state["done"] += 1
            if progress is not None:
                progress(state["done"], max(state["total"], state["done"]))

        self.callback = Callback(start_state=start_state, posttask=posttask)  # type: ignore[no-untyped-call]


def _compute(delayed: Any, progress: Progress | None) -> None:
    import dask
    from dask.base import compute

    with dask.config.set(scheduler="threads"), _Counting(progress).callback:
        compute(delayed)  # type: ignore[no-untyped-call]


def write_netcdf(ds: xr.Dataset, path: str, progress: Progress | None) -> None:
    _compute(_cf_only(ds, netcdf=True).to_netcdf(path, engine="netcdf4", compute=False),
             progress)  # fmt: skip


def write_zarr(ds: xr.Dataset, path: str, progress: Progress | None) -> None:
    import warnings

    # Zarr wants equal chunks but the last: the lake-aligned first chunk is merged away.
    uniform = ds.chunk({dim: max(sizes) for dim, sizes in ds.chunks.items()})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        delayed = _cf_only(uniform, netcdf=False).to_zarr(
            path, mode="w", zarr_format=3, consolidated=True, compute=False
        )
        _compute(delayed, progress)


def _blocks(ds: xr.Dataset) -> list[slice]:
    """Slices of the leading dimension, each about :data:`CSV_CELLS` cells."""
    if not ds.sizes:
        return [slice(None)]
    lead = next(iter(ds.sizes))
    per_step = max(1, int(np.prod([n for d, n in ds.sizes.items() if d != lead])))
    step = max(1, CSV_CELLS // per_step)
    return [slice(i, i + step) for i in range(0, ds.sizes[lead], step)] or [slice(0, 0)]


def write_csv(ds: xr.Dataset, path: str, progress: Progress | None) -> int:
    """One row per cell, with its coordinates, for cells where a variable has a value;
    written block by block along the leading dimension. Returns the rows written."""
    import pandas as pd

    lead = next(iter(ds.sizes), None)
    blocks = _blocks(ds)
    rows = 0
    names = [str(n) for n in ds.data_vars]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        for n, block in enumerate(blocks):
            part = (ds.isel({lead: block}) if lead else ds).load()
            if part.sizes:
                frame = part.to_dataframe().reset_index()
            else:  # one cell of a static layer: one row
                frame = pd.DataFrame([{str(k): v.values.item() for k, v in part.variables.items()}])
            if names:
                frame = frame.dropna(subset=names, how="all")
            frame.to_csv(handle, header=n == 0, index=False)
            rows += len(frame)
            if progress is not None:
                progress(n + 1, len(blocks))
    return rows
