"""Coordinates by the CF rules: which variables are time, depth, latitude and longitude,
their canonical names, and the one time axis a cube follows.

Latitude and longitude are known by their units or standard name (CF section 4.1), never
by ``axis`` alone, which index, projection and rotated-pole coordinates carry too.
"""

from __future__ import annotations

from collections.abc import Sequence

import xarray as xr

from lake.errors import SourceError
from lake.storage import redact

CANONICAL = ("time", "depth", "latitude", "longitude")
_KNOWN_NAMES = {
    "time": "time", "t": "time",
    "depth": "depth", "deph": "depth", "lev": "depth", "deptht": "depth", "z": "depth",
    "lat": "latitude", "latitude": "latitude", "nav_lat": "latitude",
    "lon": "longitude", "longitude": "longitude", "nav_lon": "longitude",
}  # fmt: skip
# The units CF accepts for latitude and longitude (section 4.1), spaces and case aside.
LATITUDE_UNITS = frozenset({"degrees_north", "degree_north", "degree_n", "degrees_n",
                            "degreen", "degreesn"})  # fmt: skip
LONGITUDE_UNITS = frozenset({"degrees_east", "degree_east", "degree_e", "degrees_e",
                             "degreee", "degreese"})  # fmt: skip
_PRESSURE_UNITS = frozenset({"dbar", "decibar", "decibars", "pa", "hpa", "kpa", "bar", "mbar"})


def geographic(var: xr.Variable) -> str | None:
    """``latitude`` or ``longitude`` when CF says the variable is one (its units or its
    standard name), else None: an ``axis`` of Y or X alone does not, since index, projection
    and rotated-pole coordinates carry one too."""
    units = str(var.attrs.get("units", "")).lower().replace(" ", "")
    std = str(var.attrs.get("standard_name", "")).lower()
    if std == "latitude" or units in LATITUDE_UNITS:
        return "latitude"
    if std == "longitude" or units in LONGITUDE_UNITS:
        return "longitude"
    return None


def _axis_of(name: str, var: xr.Variable) -> str | None:
    """The canonical name a coordinate may take, by the CF rules (or a well-known name
    whose attributes do not say otherwise)."""
    axis = str(var.attrs.get("axis", "")).upper()
    std = str(var.attrs.get("standard_name", "")).lower()
    units = str(var.attrs.get("units", "")).lower().replace(" ", "")
    found = geographic(var)
    if found is None and (axis == "T" or std == "time"):
        found = "time"
    elif found is None and (std == "depth" or axis == "Z"):
        # A vertical axis is a depth unless it says it is something else (pressure, a
        # model level, a sigma coordinate, a height).
        found = "depth" if std in ("", "depth") and units not in _PRESSURE_UNITS else None
    elif found is None:
        known = _KNOWN_NAMES.get(name.lower())
        # A well-known name whose attributes give it another meaning (a cell index, a
        # projection coordinate, a pressure) keeps it.
        other = (axis or std or units) if known in ("latitude", "longitude") else (
            std or units in _PRESSURE_UNITS if known == "depth" else "")  # fmt: skip
        found = None if other else known
    return found


def normalise(ds: xr.Dataset, indexes: bool = True) -> xr.Dataset:
    """Rename the time, depth, latitude and longitude coordinates (and their dimensions).

    A coordinate is renamed when CF says what it is (:func:`_axis_of`), it is the only
    candidate for its name, it is 0-d or 1-d, and the canonical name is free (no variable
    or dimension has it). Its dimension is renamed too when the coordinate is that
    dimension's own coordinate, or the one coordinate along a dimension that has none
    (``lat(y)``); coordinates along a shared dimension (``LATITUDE(N_PROF)`` with
    ``LONGITUDE(N_PROF)``) keep it. 2-D latitude and longitude keep their names.
    Attributes are kept as they are. With ``indexes``, renamed dimension coordinates get
    the default index xarray would have created.
    """
    candidates: dict[str, list[str]] = {}
    for name, var in ds.variables.items():
        axis = _axis_of(str(name), var)
        if axis and var.ndim <= 1 and not str(name).upper().endswith("_QC"):
            candidates.setdefault(axis, []).append(str(name))
    along: dict[str, int] = {}
    for names in candidates.values():
        for name in names:
            for dim in ds.variables[name].dims:
                along[str(dim)] = along.get(str(dim), 0) + 1
    taken = {str(n) for n in ds.variables} | {str(d) for d in ds.dims}
    renames: dict[str, str] = {}
    for canonical, names in candidates.items():
        # Prefer a dimension coordinate when several variables claim the same axis.
        dims_coords = [n for n in names if ds[n].dims == (n,)]
        pick = dims_coords if len(dims_coords) == 1 else names
        if len(pick) != 1:
            continue
        name = pick[0]
        var = ds.variables[name]
        free = canonical == name or canonical not in taken
        if not free:
            continue  # never renamed onto a name that exists
        if name != canonical:
            renames[name] = canonical
        if var.ndim == 1 and var.dims[0] != canonical:
            dim = str(var.dims[0])
            own = var.dims == (name,)
            lone = dim not in ds.variables and along.get(dim, 0) == 1
            if (own or lone) and canonical not in ds.dims and dim not in renames:
                renames[dim] = canonical
    out = ds.rename(renames)
    for old, new in renames.items():
        if new in out.variables and old in ds.variables:
            out.variables[new].encoding["source_name"] = old
    for name in CANONICAL:
        if name in out.variables and name not in out.coords:
            out = out.set_coords(name)
        if (
            indexes
            and name in out.variables
            and out[name].dims == (name,)
            and name not in out.indexes
        ):
            out = out.set_xindex(name)
    return out


def time_axes(ds: xr.Dataset) -> list[str]:
    """The time axes of a file: dimension coordinates that CF says are times."""
    return [str(n) for n, v in ds.variables.items()
            if v.dims == (n,) and _axis_of(str(n), v) == "time"]  # fmt: skip


def data_by_time_axis(
    ds: xr.Dataset, variables: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """Each time axis of a file with the data variables along it (only ``variables``, when
    given): the cubes a file with several time axes gives, one per axis with data."""
    wanted = set(ds.data_vars) if variables is None else set(variables)
    return {axis: sorted(str(n) for n, v in ds.data_vars.items() if axis in v.dims and n in wanted)
            for axis in time_axes(ds)}  # fmt: skip


def choose_time_axis(ds: xr.Dataset, time: str | None, url: str) -> tuple[xr.Dataset, list[str]]:
    """Keep the one time axis a cube is built along (``time``, the spec's choice, needed
    when a file has several, as OceanSITES moorings with ``TIME``, ``TIME_HR`` and
    ``TIME_DY`` do); drop the other time axes and the variables along them, and return
    their names so that the build can say what the cube leaves out."""
    axes = time_axes(ds)
    if time is None and len(axes) <= 1:
        return ds, []
    if time is None:
        raise SourceError(
            redact(url),
            f"has {len(axes)} time axes ({', '.join(axes)}) and a cube follows one",
            f"name the one to build along in the spec (`cube: {{time: {axes[0]}}}`), and "
            "build the others as datasets of their own",
        )
    if time not in axes:
        raise SourceError(
            redact(url),
            f"has no time axis {time!r} (its time axes: {', '.join(axes) or 'none'})",
            "name one of them in the spec's `cube.time`",
        )
    others = {a for a in axes if a != time}
    dropped = sorted(str(n) for n, v in ds.variables.items()
                     if n in others or others & {str(d) for d in v.dims})  # fmt: skip
    return ds.drop_vars(dropped), dropped
