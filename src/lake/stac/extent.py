"""A cube's geographic extent, from its coordinates as CF defines them.

Latitude and longitude are the coordinate variables whose units or standard name say so
(:func:`lake.cubes.netcdf.geographic`), whatever their names and dimensions: 1-D axes, 2-D
curvilinear coordinates, or a station's scalars. Index, projection and rotated-pole
coordinates are not; a cube with none has no known extent, and the catalogue says so
rather than publish numbers that are not degrees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lake.cubes.coords import geographic

if TYPE_CHECKING:
    import xarray as xr


def coordinates(ds: xr.Dataset, kind: str) -> list[xr.DataArray]:
    """The variables of ``ds`` that CF says are ``latitude`` (or ``longitude``), those of
    the most dimensions first (the 2-D positions of a curvilinear grid before its 1-D
    nominal axes)."""
    found = [ds[name] for name, var in ds.variables.items() if geographic(var) == kind]
    return sorted(found, key=lambda v: -v.ndim)


def longitude_range(values: np.ndarray) -> tuple[float, float] | None:
    """West and east bounds of longitudes in any convention (0-360, -180-180, -280-80),
    as -180..180 degrees; west > east when the points cross the antimeridian. A grid
    around the whole globe (no gap wider than its own spacing along its last axis) gives
    -180, 180."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None
    wrapped = np.unique(np.round((finite + 180.0) % 360.0 - 180.0, 9))
    if wrapped.size == 1:
        return float(wrapped[0]), float(wrapped[0])
    gaps = np.diff(np.concatenate([wrapped, [wrapped[0] + 360.0]]))
    widest = int(np.argmax(gaps))
    if gaps[widest] <= 1.5 * _spacing(values) + 1e-9:
        return -180.0, 180.0  # around the globe: no gap marks a side
    if widest == wrapped.size - 1:
        return float(wrapped[0]), float(wrapped[-1])
    return float(wrapped[widest + 1]), float(wrapped[widest])


def _spacing(values: np.ndarray) -> float:
    """The grid's typical step in longitude, along its last axis (0 when there is none)."""
    if values.ndim == 0 or values.shape[-1] < 2:
        return 0.0
    steps = np.abs((np.diff(values, axis=-1) + 180.0) % 360.0 - 180.0)
    steps = steps[np.isfinite(steps)]
    return float(np.median(steps)) if steps.size else 0.0


def geographic_bbox(ds: xr.Dataset) -> list[float] | None:
    """``[west, south, east, north]`` of the cube, or None when its coordinates do not say
    where it is (no latitude and longitude, or no finite value)."""
    lats, lons = coordinates(ds, "latitude"), coordinates(ds, "longitude")
    if not lats or not lons:
        return None
    lat = np.asarray(lats[0].values, dtype=np.float64)
    lat = lat[np.isfinite(lat) & (np.abs(lat) <= 90)]
    west_east = longitude_range(np.asarray(lons[0].values, dtype=np.float64))
    if not lat.size or west_east is None:
        return None
    return [west_east[0], float(lat.min()), west_east[1], float(lat.max())]
