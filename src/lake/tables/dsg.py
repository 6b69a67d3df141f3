"""CF discrete sampling geometries (CF 1.11, chapter 9) as rows: one row per observation.

A DSG file holds features (points, time series, profiles, trajectories and their nestings)
in one of four representations: orthogonal or incomplete multidimensional arrays, and
contiguous or indexed ragged arrays. Argo's ``N_PROF × N_LEVELS`` files and the Copernicus
in-situ ``TIME × DEPTH`` files are incomplete multidimensional arrays. The structure, not
the feature type, decides how values become rows:

* **Ragged arrays.** A count variable (``sample_dimension``) spreads each instance's values
  over its contiguous observations; an index variable (``instance_dimension``) names the
  instance of each element. Both are followed, as deep as the nesting goes (stations →
  profiles → observations), so every instance-level value lands on its observations.
* **Multidimensional arrays.** The observation dimensions are those of the variables along
  the vertical coordinate (else of the most variables spanning the time and position
  dimensions); each variable whose dimensions are among them is broadcast over them. A row
  whose every observation-dimension value is missing is padding and is no row.

Variables along other dimensions (Argo's calibration and history records) describe the
file, not its observations, and are left out. Values are decoded as CF says (``_FillValue``
and ``missing_value`` become nulls, ``scale_factor``/``add_offset`` applied, times in
UTC), flags keep their integers or characters, character arrays become strings. The time,
latitude and longitude coordinates become ``time``, ``latitude`` and ``longitude`` (their
source names in the column metadata); every other variable keeps its name, with its units,
standard name and flag meanings in the column metadata.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from lake.errors import SourceError

if TYPE_CHECKING:
    import xarray as xr

FEATURE_TYPES = ("point", "timeseries", "trajectory", "profile", "timeseriesprofile",
                 "trajectoryprofile")  # fmt: skip
_LAT_UNITS = {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}
_LON_UNITS = {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}
_VERTICAL_NAMES = ("depth", "height", "altitude", "sea_water_pressure", "air_pressure")
_KEPT_ATTRS = ("units", "standard_name", "long_name", "flag_values", "flag_masks",
               "flag_meanings", "positive", "axis", "calendar", "comment", "cf_role")  # fmt: skip
RESERVED = ("geometry", "bbox", "source_file", "source_id")
"""Columns the lake adds; a source variable of one of these names gets ``_source`` added."""
CANONICAL = ("time", "latitude", "longitude")
NOT_A_DSG_FIX = "build gridded data as a cube (`cube: {netcdf: ...}`), not a table"


@dataclass
class _Var:
    """One source variable, raw: dimensions without the string-length one, values as
    stored (character arrays joined into strings), and its attributes."""

    name: str
    dims: tuple[str, ...]
    values: np.ndarray
    attrs: dict[str, Any]

    @property
    def units(self) -> str:
        return str(self.attrs.get("units", "")).strip()

    @property
    def standard_name(self) -> str:
        return str(self.attrs.get("standard_name", "")).strip().lower()

    @property
    def is_time(self) -> bool:
        return " since " in f" {self.units.lower()} " and self.values.dtype.kind in "iuf"


def _string_dims(ds: xr.Dataset) -> set[str]:
    """The string-length dimensions: the last of character variables, and of nothing else."""
    chars = {str(v.dims[-1]) for v in ds.variables.values()
             if v.dtype.kind == "S" and v.dtype.itemsize == 1 and v.dims}  # fmt: skip
    for var in ds.variables.values():
        if not (var.dtype.kind == "S" and var.dtype.itemsize == 1):
            chars -= {str(d) for d in var.dims}
        else:
            chars -= {str(d) for d in var.dims[:-1]}
    return chars


def _raw_variables(ds: xr.Dataset) -> dict[str, _Var]:
    out: dict[str, _Var] = {}
    strings = _string_dims(ds)
    for name, var in ds.variables.items():
        values = np.asarray(var.values)
        dims = tuple(str(d) for d in var.dims)
        if values.dtype.kind == "S" and values.dtype.itemsize == 1 and dims and dims[-1] in strings:
            width = values.shape[-1]
            joined = np.ascontiguousarray(values).view(f"S{width}").reshape(values.shape[:-1])
            values = np.char.decode(np.char.strip(joined, b" \x00"), "utf-8", "replace")
            dims = dims[:-1]
        elif values.dtype.kind == "S":
            values = np.char.decode(np.char.strip(values, b" \x00"), "utf-8", "replace")
        elif values.dtype.kind == "O":
            text = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                    for v in values.ravel()]  # fmt: skip
            values = np.array(text, dtype=object).reshape(values.shape)
        out[str(name)] = _Var(str(name), dims, values, dict(var.attrs))
    return out


def feature_type(ds: xr.Dataset) -> str | None:
    """The file's declared ``featureType`` (lower case), or None."""
    attrs = {key.lower(): str(value).strip().lower() for key, value in ds.attrs.items()}
    for key in ("featuretype", "cdm_data_type"):
        kind = attrs.get(key, "").replace("_", "")
        if kind in FEATURE_TYPES:
            return kind
    return None


class _Rows:
    """Where each variable's values go among the rows: for each dimension, the index of
    the element each row takes (a ragged nesting), or the observation dimensions whose
    product the rows are (multidimensional)."""

    def __init__(self, variables: dict[str, _Var], sizes: dict[str, int], label: str) -> None:
        self.label = label
        self.sizes = sizes
        self.maps: dict[str, np.ndarray] = {}
        self.obs_dims: tuple[str, ...] = ()
        counts = [v for v in variables.values() if "sample_dimension" in v.attrs]
        indexes = [v for v in variables.values() if "instance_dimension" in v.attrs]
        self.ragged = bool(counts or indexes)
        if self.ragged:
            self._follow(counts, indexes)

    def _follow(self, counts: list[_Var], indexes: list[_Var]) -> None:
        samples = {str(v.attrs["sample_dimension"]) for v in counts}
        bottom = [d for d in samples if d not in {v.dims[0] for v in counts if v.dims}]
        if not bottom and indexes:
            bottom = [indexes[0].dims[0]] if indexes[0].dims else []
        if len(bottom) != 1:
            raise SourceError(
                self.label,
                "has ragged arrays whose sample dimension is unclear",
                "give each count variable a `sample_dimension` attribute",
            )
        obs = bottom[0]
        self.obs_dims = (obs,)
        self.maps[obs] = np.arange(self.sizes[obs])
        for _ in range(len(counts) + len(indexes)):
            for var in counts:
                sample, (instance,) = str(var.attrs["sample_dimension"]), var.dims
                if sample in self.maps and instance not in self.maps:
                    row_size = np.where(np.ma.getmaskarray(_masked(var)), 0, var.values)
                    row_size = row_size.astype(np.int64)
                    if int(row_size.sum()) != self.sizes[sample] or (row_size < 0).any():
                        raise SourceError(
                            f"{self.label}: {var.name}",
                            f"counts {int(row_size.sum())} elements of {sample}, which has "
                            f"{self.sizes[sample]}",
                            "fix the count variable: a contiguous ragged array's counts add up "
                            "to its sample dimension",
                        )
                    owner = np.repeat(np.arange(len(row_size)), row_size)
                    self.maps[instance] = owner[self.maps[sample]]
            for var in indexes:
                instance, (own,) = str(var.attrs["instance_dimension"]), var.dims
                if own in self.maps and instance not in self.maps:
                    index = np.asarray(var.values).astype(np.int64)
                    if ((index < 0) | (index >= self.sizes.get(instance, 0))).any():
                        raise SourceError(
                            f"{self.label}: {var.name}",
                            f"indexes elements outside {instance} (0 to "
                            f"{self.sizes.get(instance, 0) - 1})",
                            "fix the index variable of the indexed ragged array",
                        )
                    self.maps[instance] = index[self.maps[own]]

    @property
    def count(self) -> int:
        if self.ragged:
            return len(self.maps[self.obs_dims[0]])
        return int(np.prod([self.sizes[d] for d in self.obs_dims], dtype=np.int64))

    def fits(self, var: _Var) -> bool:
        if self.ragged:
            return len(var.dims) <= 1 and all(d in self.maps for d in var.dims)
        return set(var.dims) <= set(self.obs_dims)

    def spread(self, values: np.ndarray, dims: tuple[str, ...]) -> np.ndarray:
        """A variable's values on every row (before the padding filter)."""
        if self.ragged:
            return values[self.maps[dims[0]]] if dims else np.broadcast_to(values, (self.count,))
        order = [dims.index(d) for d in self.obs_dims if d in dims]
        moved = np.transpose(values, order) if dims else values
        shape = [self.sizes[d] if d in dims else 1 for d in self.obs_dims]
        return np.broadcast_to(moved.reshape(shape), [self.sizes[d] for d in self.obs_dims]).ravel()


def _masked(var: _Var) -> np.ma.MaskedArray:
    """Values with CF's missing ones masked (``_FillValue``, ``missing_value``, NaN, and
    empty strings)."""
    values = var.values
    if values.dtype.kind in "UOT":
        return np.ma.masked_array(values, mask=(values == "") | (values == None))  # noqa: E711
    mask = np.zeros(values.shape, dtype=bool)
    for key in ("_FillValue", "missing_value"):
        if key in var.attrs:
            for missing in np.atleast_1d(np.asarray(var.attrs[key])):
                if values.dtype.kind == "f" and np.isnan(missing):
                    continue
                mask |= values == np.asarray(missing).astype(values.dtype)
    if values.dtype.kind == "f":
        mask |= np.isnan(values)
    return np.ma.masked_array(values, mask=mask)


def _pick(candidates: list[_Var], rows: _Rows, prefer: Any) -> _Var | None:
    """Of the candidates along the observations, the one of most dimensions, then the
    preferred, then the first in the file (``max`` keeps the first of equals)."""
    fitting = [v for v in candidates if rows.fits(v)]
    return max(fitting, key=lambda v: (len(v.dims), prefer(v))) if fitting else None


def _observation_dims(variables: dict[str, _Var], label: str) -> tuple[str, ...]:
    """The dimensions whose product the rows are, in a multidimensional representation:
    those of the most variables spanning every dimension of the time, position and
    vertical coordinates."""
    data = [v for v in variables.values() if v.dims and v.values.dtype.kind in "iufUOT"]
    position: set[str] = set()
    for test in (lambda v: v.is_time, _is_lat, _is_lon, _vertical_rank):
        found = [v for v in data if test(v)]
        if found:
            position |= set(max(found, key=lambda v: len(v.dims)).dims)
    tally: dict[tuple[str, ...], int] = {}
    for v in data:
        if set(v.dims) >= position:
            tally[v.dims] = tally.get(v.dims, 0) + 1
    if not tally:
        raise SourceError(label, "has no variable along its time and position dimensions",
                          NOT_A_DSG_FIX)  # fmt: skip
    return max(tally, key=lambda d: (tally[d], -len(d)))


def _grid_axes(variables: dict[str, _Var], sizes: dict[str, int]) -> tuple[str, str] | None:
    """The latitude and longitude dimensions of a grid: dimension coordinates of more than
    one element that a variable spans together (no DSG has them)."""
    lats = [v.name for v in variables.values() if v.dims == (v.name,) and _is_lat(v)]
    lons = [v.name for v in variables.values() if v.dims == (v.name,) and _is_lon(v)]
    for y in lats:
        for x in lons:
            if (
                x != y
                and sizes[x] > 1
                and sizes[y] > 1
                and any({x, y} <= set(v.dims) for v in variables.values())
            ):
                return y, x
    return None


def _vertical_rank(var: _Var) -> int:
    if str(var.attrs.get("axis", "")).upper() == "Z":
        return 3
    if var.standard_name in _VERTICAL_NAMES[:3] or "positive" in var.attrs:
        return 2
    return 1 if var.standard_name in _VERTICAL_NAMES else 0


def _is_lat(var: _Var) -> bool:
    return var.standard_name == "latitude" or var.units.lower().replace(" ", "") in _LAT_UNITS


def _is_lon(var: _Var) -> bool:
    return var.standard_name == "longitude" or var.units.lower().replace(" ", "") in _LON_UNITS


def _times(var: _Var, values: np.ma.MaskedArray, label: str) -> pa.Array:
    from xarray.coding.times import decode_cf_datetime

    calendar = str(var.attrs.get("calendar", "standard")).lower()
    mask = np.ma.getmaskarray(values)
    numbers = np.where(mask, 0, np.ma.getdata(values)).astype(np.float64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dates = np.asarray(decode_cf_datetime(numbers, var.units, calendar))
    except (ValueError, TypeError, OverflowError) as exc:
        raise SourceError(
            f"{label}: {var.name}",
            f"has time units that CF does not define ({var.units!r}: {exc})",
            "give it units such as 'days since 1950-01-01T00:00:00Z'",
        ) from None
    if dates.dtype.kind == "M":
        stamps = dates.astype("datetime64[us]").ravel()
    else:  # a non-standard calendar: cftime dates
        stamps = np.array([_real_date(d) for d in dates.ravel()], dtype="datetime64[us]")
    return pa.array(stamps, pa.timestamp("us", tz="UTC"), mask=mask.ravel())


def _real_date(value: Any) -> np.datetime64:
    """A date of any CF calendar as the nearest real one (a 360-day 30 February is 1 March)."""
    if isinstance(value, np.datetime64):
        return value
    import datetime as dt

    day = min(value.day, 28)
    base = dt.datetime(value.year, value.month, day, value.hour, value.minute, value.second,
                       value.microsecond)  # fmt: skip
    return np.datetime64(base + dt.timedelta(days=value.day - day), "us")


def _column(var: _Var, values: np.ndarray, mask: np.ndarray, label: str) -> pa.Array:
    """One decoded column: nulls for missing values, CF packing applied, times as UTC."""
    if var.is_time:
        return _times(var, np.ma.masked_array(values, mask=mask), label)
    if values.dtype.kind in "UOT":
        return pa.array(values.astype(object), pa.string(), mask=mask)
    scale, offset = var.attrs.get("scale_factor"), var.attrs.get("add_offset")
    if scale is not None or offset is not None:
        kind = np.result_type(*(np.asarray(a).dtype for a in (scale, offset) if a is not None))
        kind = kind if kind.kind == "f" else np.dtype(np.float64)
        values = values.astype(kind) * kind.type(1 if scale is None else scale)
        values = values + kind.type(0 if offset is None else offset)
    if values.dtype.kind == "f":
        values = np.where(mask, np.nan, values)
    return pa.array(values, mask=mask)


def _field_metadata(var: _Var, name: str) -> dict[bytes, bytes]:
    meta = {}
    for key in _KEPT_ATTRS:
        if key in var.attrs:
            value = var.attrs[key]
            text = " ".join(map(str, np.atleast_1d(value).tolist())) if np.ndim(value) or \
                isinstance(value, np.ndarray) else str(value)  # fmt: skip
            meta[key.encode()] = text.encode()
    if name != var.name:
        meta[b"source_name"] = var.name.encode()
    return meta


def read_dsg(ds: xr.Dataset, label: str) -> pa.Table:
    """The observations of one DSG file as rows (see the module's rules); ``ds`` is opened
    with ``decode_cf=False``; ``label`` names the file in messages."""
    variables = _raw_variables(ds)
    sizes = {str(k): int(v) for k, v in ds.sizes.items()}
    declared = feature_type(ds)
    grid = _grid_axes(variables, sizes)
    if grid is not None:
        raise SourceError(
            label,
            f"is a grid along {grid[0]} and {grid[1]}, not a discrete sampling geometry"
            + (f" (although its featureType says {declared})" if declared else ""),
            NOT_A_DSG_FIX,
        )
    rows = _Rows(variables, sizes, label)
    if not rows.ragged:
        rows.obs_dims = _observation_dims(variables, label)
    candidates = list(variables.values())
    time = _pick(
        [v for v in candidates if v.is_time],
        rows,
        lambda v: (v.standard_name == "time", str(v.attrs.get("axis", "")).upper() == "T"),
    )
    lat = _pick(
        [v for v in candidates if _is_lat(v)], rows, lambda v: v.standard_name == "latitude"
    )
    lon = _pick([v for v in candidates if _is_lon(v)], rows,
                lambda v: v.standard_name == "longitude")  # fmt: skip
    _check_structure(declared, rows, variables, time, lat, lon, label)
    assert time is not None and lat is not None and lon is not None
    chosen = {time.name: "time", lat.name: "latitude", lon.name: "longitude"}
    kept = [v for v in candidates if rows.fits(v) and not _is_structural(v)]
    kept.sort(key=lambda v: (v.name not in chosen, CANONICAL.index(chosen[v.name])
                             if v.name in chosen else 0))  # fmt: skip
    masks = {v.name: np.ma.getmaskarray(_masked(v)) for v in kept}
    full = [v for v in kept if v.dims and (rows.ragged or set(v.dims) == set(rows.obs_dims))]
    keep = np.zeros(rows.count, dtype=bool) if full else np.ones(rows.count, dtype=bool)
    for v in full:
        keep |= ~rows.spread(masks[v.name], v.dims)
    fields, arrays = [], []
    taken = set(CANONICAL)
    for v in kept:
        name = chosen.get(v.name, v.name)
        if v.name not in chosen and (name in taken or name in RESERVED):
            name = f"{name}_source"
        taken.add(name)
        # Decoded once at the variable's own size, then taken onto its rows.
        decoded = _column(v, v.values.ravel(), masks[v.name].ravel(), label)
        where = rows.spread(np.arange(v.values.size).reshape(v.values.shape), v.dims)[keep]
        column = decoded.take(pa.array(where))
        fields.append(pa.field(name, column.type, metadata=_field_metadata(v, name)))
        arrays.append(column)
    meta = {b"lake:feature_type": (declared or _inferred(variables)).encode()}
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))


def _is_structural(var: _Var) -> bool:
    """Count and index variables of ragged arrays: structure, not observations."""
    return "sample_dimension" in var.attrs or "instance_dimension" in var.attrs


def _inferred(variables: dict[str, _Var]) -> str:
    roles = {str(v.attrs.get("cf_role", "")) for v in variables.values()}
    if "profile_id" in roles:
        return "trajectoryprofile" if "trajectory_id" in roles else (
            "timeseriesprofile" if "timeseries_id" in roles else "profile")  # fmt: skip
    if "trajectory_id" in roles:
        return "trajectory"
    return "timeseries" if "timeseries_id" in roles else "point"


def _check_structure(
    declared: str | None,
    rows: _Rows,
    variables: dict[str, _Var],
    time: _Var | None,
    lat: _Var | None,
    lon: _Var | None,
    label: str,
) -> None:
    """The file is a DSG whose structure agrees with its ``featureType``."""
    for what, var in (("time", time), ("latitude", lat), ("longitude", lon)):
        if var is None:
            raise SourceError(
                label,
                f"has no {what} coordinate along its observations"
                + ("" if declared else ", and no featureType: it is not a discrete sampling "
                   "geometry"),
                NOT_A_DSG_FIX if not declared else
                f"give the file a {what} variable with CF units or standard name",
            )  # fmt: skip
    if (
        declared
        and declared.endswith("profile")
        and not any(_vertical_rank(v) and rows.fits(v) for v in variables.values())
    ):
        raise SourceError(
            label,
            f"says featureType {declared}, but has no vertical coordinate (axis Z, a depth, "
            "height or pressure) along its observations",
            "give the vertical coordinate `axis: Z`, or correct the featureType",
        )
    nested = rows.ragged or len(rows.obs_dims) > 1
    if declared == "point" and nested:
        raise SourceError(
            label,
            "says featureType point, but nests its observations in features "
            f"({'ragged arrays' if rows.ragged else ' × '.join(rows.obs_dims)})",
            "correct the featureType (timeSeries, profile, trajectory, ...)",
        )
