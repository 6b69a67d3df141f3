"""A collection's georeferenced overview: a PNG whose pixels tile the collection's bbox
exactly (west to east, north to south, in longitude and latitude), with no axes, labels or
margins, and transparent where there is no data, so that a map client (STAC Browser,
Leaflet, OpenLayers) can lay it over the bbox as it is.

Values are binned to the pixel grid by their own coordinates (the mean of the cells that
fall in a pixel), so a regular grid, a curvilinear one and points all land where they are.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

MAX_PIXELS = 1024
"""The overview's longest side, in pixels."""


def _pixels(lon: np.ndarray, lat: np.ndarray, bbox: list[float]) -> tuple[int, int]:
    """(rows, columns): about one pixel per cell, no more than :data:`MAX_PIXELS` a side."""
    if lon.ndim == 1 and lat.ndim == 1:
        ny, nx = lat.size, lon.size
    else:
        ny, nx = lat.shape[0], lat.shape[-1] if lat.ndim > 1 else lat.shape[0]
    scale = min(1.0, MAX_PIXELS / max(ny, nx, 1))
    return max(1, round(ny * scale)), max(1, round(nx * scale))


def _width(bbox: list[float]) -> float:
    west, _, east, _ = bbox[:4]
    return (east - west) % 360.0 or (360.0 if east != west else 0.0)


def binned(
    values: np.ndarray, lon: np.ndarray, lat: np.ndarray, bbox: list[float],
    shape: tuple[int, int] | None = None, mean: bool = True,
) -> np.ndarray | None:  # fmt: skip
    """``values`` at ``lon``/``lat`` (broadcast together) on a pixel grid over ``bbox``:
    row 0 is the north edge. The mean (or, with ``mean=False``, the sum) of the values in
    each pixel; NaN where none falls. None for a bbox of no width or height."""
    west, south, _, north = bbox[:4]
    width = _width(bbox)
    if width <= 0 or north <= south:
        return None
    if lon.ndim == 1 and lat.ndim == 1 and values.ndim == 2:
        lon, lat = np.meshgrid(lon, lat)
    x = np.mod(np.asarray(lon, dtype=np.float64) - west, 360.0).ravel()
    y = np.asarray(lat, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    keep = np.isfinite(v) & np.isfinite(x) & np.isfinite(y) & (x <= width + 1e-9)
    rows, cols = shape or _pixels(np.asarray(lon), np.asarray(lat), bbox)
    ranges = [[south, north], [0.0, width]]
    total, _, _ = np.histogram2d(y[keep], x[keep], bins=(rows, cols), range=ranges, weights=v[keep])
    count, _, _ = np.histogram2d(y[keep], x[keep], bins=(rows, cols), range=ranges)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = total / count if mean else np.where(count > 0, total, np.nan)
    return np.flipud(np.where(count > 0, grid, np.nan))


def png(grid: np.ndarray, key_name: str, key: str, cmap: str = "viridis",
        log: bool = False) -> bytes:  # fmt: skip
    """The grid as an RGBA PNG (NaN transparent), its colours spread over the 2nd to 98th
    percentile (or log10 of the values), with ``key`` in its text chunk ``key_name``."""
    from matplotlib import colormaps
    from PIL import Image, PngImagePlugin

    data = np.log10(np.where(grid > 0, grid, np.nan)) if log else grid
    finite = data[np.isfinite(data)]
    low, high = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    span = float(high - low) or 1.0
    scaled = np.clip((data - low) / span, 0.0, 1.0)
    rgba: Any = colormaps[cmap](np.nan_to_num(scaled), bytes=True)
    rgba[..., 3] = np.where(np.isfinite(data), 255, 0)
    info = PngImagePlugin.PngInfo()
    info.add_text(key_name, key)
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="png", pnginfo=info)
    return buffer.getvalue()
