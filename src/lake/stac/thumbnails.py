"""Collection thumbnails: a cube's last time step with a colour bar; a table's point density."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

    from lake.storage import Root
    from lake.table import FileInfo


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(4, 3), dpi=80)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


# The thumbnail is 320 x 240 pixels: a map is averaged down to at most this many cells a
# side before it is drawn. Drawing every cell of a 1024 x 1440 grid took 0.9 s, most of a
# cube's catalogue time, for the same picture.
DISPLAY_CELLS = 320


def display_field(field: xr.DataArray, cells: int = DISPLAY_CELLS) -> xr.DataArray:
    """``field`` (latitude, longitude) averaged over blocks so no side exceeds ``cells``.

    Block means skip NaN (land); coordinates become block centres; a ragged edge is dropped.
    """
    factors = {d: -(-n // cells) for d, n in field.sizes.items()}
    if all(f == 1 for f in factors.values()):
        return field
    return field.coarsen(factors, boundary="trim").mean(keep_attrs=True)


def cube_thumbnail(ds: xr.Dataset) -> bytes | None:
    """A map of the last time step (first depth) of the first gridded variable."""
    for name, var in ds.data_vars.items():
        if {"time", "latitude", "longitude"} <= set(var.dims):
            selection = {d: (-1 if d == "time" else 0) for d in var.dims
                         if d not in ("latitude", "longitude")}  # fmt: skip
            field = display_field(var.isel(selection).transpose("latitude", "longitude"))
            values = np.asarray(field.values, dtype=np.float64)
            if not np.isfinite(values).any():
                continue
            fig, ax = _figure()
            lon, lat = field["longitude"].values, field["latitude"].values
            mesh = ax.pcolormesh(lon, lat, values, shading="auto", cmap="viridis")
            fig.colorbar(mesh, ax=ax, label=str(var.attrs.get("units", "")))
            last = ds["time"].values[-1]
            dated = np.issubdtype(ds["time"].dtype, np.datetime64)
            when = np.datetime_as_string(last, unit="D") if dated else str(last)
            ax.set_title(f"{name}, {when}", fontsize=9)
            ax.set_xlabel("longitude")
            ax.set_ylabel("latitude")
            return _png(fig)
    for name, var in ds.data_vars.items():
        # A station: the series of the first variable at its first depth.
        if "time" in var.dims and var.dtype.kind == "f" and not str(name).endswith("_QC"):
            series = var.isel({d: 0 for d in var.dims if d != "time"})
            fig, ax = _figure()
            ax.plot(ds["time"].values, np.asarray(series.values), linewidth=0.6)
            ax.set_ylabel(f"{name} ({var.attrs.get('units', '')})")
            ax.set_title(f"{name}", fontsize=9)
            fig.autofmt_xdate()
            return _png(fig)
    return None


def table_thumbnail(root: Root, dataset: str, files: list[FileInfo], rows: int) -> bytes | None:
    """A point-density map from the bbox centres of ``files`` (a spread of the table's
    files with a bbox)."""
    import pyarrow.parquet as pq

    if not files:
        return None
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    fs = root.fs()
    for info in files:
        with fs.open(root.path(dataset, info.path), "rb") as handle:
            bbox = pq.read_table(handle, columns=["bbox"]).column("bbox").combine_chunks()
        valid = np.asarray(bbox.is_valid().to_numpy(zero_copy_only=False))
        for name, out in (("xmin", xs), ("ymin", ys)):
            values = np.asarray(bbox.field(name).fill_null(0.0).to_numpy(zero_copy_only=False))
            out.append(values[valid])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if not len(x):
        return None
    fig, ax = _figure()
    counts, xedges, yedges = np.histogram2d(x, y, bins=(120, 90))
    shown = np.ma.masked_equal(counts.T, 0)
    mesh = ax.pcolormesh(xedges, yedges, np.ma.log10(shown), cmap="magma_r")
    fig.colorbar(mesh, ax=ax, label="log10 rows per cell")
    ax.set_title(f"{dataset}: {rows:,} rows", fontsize=9)
    return _png(fig)
