"""Collection pictures: the thumbnail (a cube's last time step with a colour bar; a
table's point density, log scale), and the georeferenced overview of the same field
(:mod:`lake.stac.overview`) for map overlays.

Each thumbnail is a :class:`Picture`: the sha256 of what it shows (values, coordinates,
labels), and a function that draws it. The key is stored in the PNG itself (a text chunk),
so a build whose collection would show the same picture neither draws nor writes it: a
rerun with no new input leaves the file untouched, and skips drawing (a quarter of a
second, more with the plotting library's import).
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lake.stac.describe import real_dates
from lake.stac.extent import coordinates

if TYPE_CHECKING:
    import xarray as xr

    from lake.storage import Root
    from lake.tables.files import TableFile

KEY = "lake-thumbnail"
"""The PNG text chunk holding a thumbnail's :attr:`Picture.key`."""
STYLE = "2"
"""Part of every key: change it when the drawing changes, so thumbnails are redrawn."""


@dataclass(frozen=True)
class Picture:
    """A thumbnail to be: what identifies its content, and how to draw it."""

    key: str
    draw: Callable[[], bytes]
    """Draws the PNG, with :attr:`key` in its text chunk :data:`KEY`."""
    overview: Callable[[], bytes] | None = None
    """Draws the georeferenced overview (same key), or None (a station: no map)."""


def _key(*parts: Any) -> str:
    digest = hashlib.sha256(STYLE.encode())
    for part in parts:
        if isinstance(part, np.ndarray) and part.dtype.kind != "O":
            digest.update(f"{part.dtype}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, np.ndarray):  # cftime dates: by value, not by address
            digest.update(repr(part.tolist()).encode())
        else:
            digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def published_key(root: Root, path: str) -> str | None:
    """The key of the thumbnail at ``path``, or None (absent, unreadable, or older)."""
    from PIL import Image

    try:
        data = root.fs().cat_file(path)
        with Image.open(io.BytesIO(data)) as image:
            text = getattr(image, "text", {})
            return str(text[KEY]) if KEY in text else None
    except Exception:  # absent or unreadable: drawn again
        return None


def _figure() -> Any:
    # Matplotlib's object interface, not pyplot: no global figure state, so drawing is
    # safe in the catalogue's thread, and the import is lighter.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), dpi=80)
    return fig, fig.subplots()


def _png(fig: Any, key: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={KEY: key})
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


def _draw_map(key: str, lon: Any, lat: Any, values: Any, title: str, units: str) -> bytes:
    fig, ax = _figure()
    if np.ndim(lon) == 2:
        # A curvilinear grid: its cells drawn where they are, so a seam in the longitudes
        # (a tripolar grid, the antimeridian) draws no band across the map.
        wrapped = (np.asarray(lon) + 180.0) % 360.0 - 180.0
        mesh = ax.scatter(wrapped.ravel(), np.asarray(lat).ravel(), c=np.asarray(values).ravel(),
                          s=2, marker="s", linewidths=0, cmap="viridis")  # fmt: skip
    else:
        mesh = ax.pcolormesh(lon, lat, values, shading="auto", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label=units)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    return _png(fig, key)


def map_axes(ds: xr.Dataset, var: xr.DataArray) -> tuple[str, str, str, str] | None:
    """``(y dimension, x dimension, latitude name, longitude name)`` for drawing ``var`` on
    a map: 2-D latitude and longitude over two of its dimensions (a curvilinear grid), or
    1-D ones along two of them, found by CF units or standard names; None if neither."""
    for lat in coordinates(ds, "latitude"):
        for lon in coordinates(ds, "longitude"):
            if (
                lat.ndim == lon.ndim == 2
                and lat.dims == lon.dims
                and set(lat.dims) <= set(var.dims)
            ):
                return str(lat.dims[0]), str(lat.dims[1]), str(lat.name), str(lon.name)
            if (lat.ndim == lon.ndim == 1 and lat.dims != lon.dims
                    and {lat.dims[0], lon.dims[0]} <= set(var.dims)):  # fmt: skip
                return str(lat.dims[0]), str(lon.dims[0]), str(lat.name), str(lon.name)
    return None


def _draw_series(key: str, times: Any, series: Any, label: str, title: str) -> bytes:
    fig, ax = _figure()
    ax.plot(times, series, linewidth=0.6)
    ax.set_ylabel(label)
    ax.set_title(title, fontsize=9)
    fig.autofmt_xdate()
    return _png(fig, key)


def _cube_overview(key: str, values: Any, lon: Any, lat: Any, bbox: list[float]) -> bytes:
    from lake.stac.overview import binned, png

    grid = binned(values, np.asarray(lon), np.asarray(lat), bbox)
    assert grid is not None
    return png(grid, KEY, key)


def cube_thumbnail(ds: xr.Dataset, bbox: list[float] | None = None) -> Picture | None:
    """A map of the last time step (first depth) of the first gridded variable (of a
    static layer: its first level), and its overview over ``bbox``."""
    static = "time" not in ds.dims
    for name, var in ds.data_vars.items():
        axes = map_axes(ds, var) if "time" in var.dims or static else None
        if axes is not None:
            ydim, xdim, lat_name, lon_name = axes
            selection = {d: (-1 if d == "time" else 0) for d in var.dims if d not in (ydim, xdim)}
            field = display_field(var.isel(selection).transpose(ydim, xdim))
            values = np.asarray(field.values, dtype=np.float64)
            if not np.isfinite(values).any():
                continue
            lon, lat = field[lon_name].values, field[lat_name].values
            if static:
                title = str(name)
            else:
                last = real_dates(ds["time"].values[-1:])[0]
                title = f"{name}, {np.datetime_as_string(last, unit='D')}"
            units = str(var.attrs.get("units", ""))
            key = _key("map", values, lon, lat, title, units, bbox)
            overview = None
            if bbox is not None and bbox[0] != bbox[2] and bbox[1] != bbox[3]:
                overview = functools.partial(_cube_overview, key, values, lon, lat, bbox)
            draw = functools.partial(_draw_map, key, lon, lat, values, title, units)
            return Picture(key, draw, overview)
    for name, var in ds.data_vars.items():
        # A station: the series of the first variable at its first depth.
        if "time" in var.dims and var.dtype.kind == "f" and not str(name).endswith("_QC"):
            series = np.asarray(var.isel({d: 0 for d in var.dims if d != "time"}).values)
            times = real_dates(ds["time"].values)
            label = f"{name} ({var.attrs.get('units', '')})"
            key = _key("series", times, series, label, str(name))
            draw = functools.partial(_draw_series, key, times, series, label, str(name))
            return Picture(key, draw)
    return None


def table_thumbnail(root: Root, dataset: str, files: list[TableFile], rows: int,
                    bbox: list[float] | None = None) -> Picture | None:  # fmt: skip
    """A point-density map from the bbox corners of ``files`` (a spread of the table's
    files with a bbox), on a log scale in colours that stand out on white, and its
    overview over ``bbox`` (rows per pixel)."""
    import pyarrow.parquet as pq

    if not files:
        return None
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    fs = root.fs()
    for info in files:
        with fs.open(root.path(dataset, info.path), "rb") as handle:
            boxes = pq.read_table(handle, columns=["bbox"]).column("bbox").combine_chunks()
        valid = np.asarray(boxes.is_valid().to_numpy(zero_copy_only=False))
        for name, out in (("xmin", xs), ("ymin", ys)):
            values = np.asarray(boxes.field(name).fill_null(0.0).to_numpy(zero_copy_only=False))
            out.append(values[valid])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if not len(x):
        return None
    # Cells a few pixels wide: a sparse table still shows at a glance.
    counts, xedges, yedges = np.histogram2d(x, y, bins=(64, 48))
    title = f"{dataset}: {rows:,} rows"
    key = _key("density", counts, xedges, yedges, title, bbox)

    def draw() -> bytes:
        from matplotlib.colors import LogNorm

        fig, ax = _figure()
        shown = np.ma.masked_equal(counts.T, 0)
        mesh = ax.pcolormesh(xedges, yedges, shown, cmap="viridis",
                             norm=LogNorm(vmin=1, vmax=max(float(shown.max()), 2.0)))  # fmt: skip
        fig.colorbar(mesh, ax=ax, label="rows per cell (log scale)")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        return _png(fig, key)

    def overview() -> bytes:
        from lake.stac.overview import binned, png

        assert bbox is not None
        grid = binned(np.ones_like(x), x, y, bbox, shape=(180, 240), mean=False)
        assert grid is not None
        return png(grid, KEY, key, log=True)

    wide = bbox is not None and bbox[0] != bbox[2] and bbox[1] != bbox[3]
    return Picture(key, draw, overview if wide else None)
