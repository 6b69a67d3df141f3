"""NetCDF sources: open, normalise, scan and read blocks of CF NetCDF3/NetCDF4 files.

Values are read *raw* (packed integers stay packed, fill values stay in place) and the CF
attributes that decode them (``scale_factor``, ``add_offset``, ``_FillValue``,
``missing_value``) travel with them, so a cube decodes with exactly xarray's arithmetic on the
source: bit for bit, at the source's size. The one exception is packing with float32
attributes, which JSON cannot carry: those variables are stored decoded (see
:func:`_unpack_float32_packing`). Only time is decoded here, because it is re-encoded
as integers with the cube's own units (see :func:`lake.cubes.timeaxis.choose_time_units`).

Coordinates are normalised to ``time``, ``depth``, ``latitude`` and ``longitude`` (found by
``axis``, ``standard_name`` or well-known names), keeping their attributes. NetCDF character
arrays become UTF-8 strings (Zarr v3 has no standard fixed-length bytes type).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import fsspec
import numpy as np
import xarray as xr

from lake.cubes.coords import choose_time_axis, data_by_time_axis, normalise
from lake.cubes.likeness import Likeness
from lake.cubes.rawread import read_direct
from lake.cubes.source import SourceAccess, SourceFile, VariableSchema, digest
from lake.errors import LakeError, SourceError
from lake.sourcefiles import NETCDF_FIX, list_sources, open_netcdf_dataset
from lake.storage import is_local, redact, with_retries

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from lake.cubes.index import SourceIndex
    from lake.spec import CubeSource

PACKING_ATTRS = ("_FillValue", "missing_value", "scale_factor", "add_offset")
T = TypeVar("T")
_NETCDF_FIX = NETCDF_FIX


def _strings_to_unicode(ds: xr.Dataset) -> xr.Dataset:
    for name, var in ds.variables.items():
        if var.dtype.kind == "O" and "calendar" in var.encoding:
            continue  # cftime dates (non-standard calendars), not text
        if var.dtype.kind in "SO":
            values = np.asarray(var.values)
            text = np.vectorize(
                lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v),
                otypes=[object],
            )(values)
            attrs = {k: v for k, v in var.attrs.items() if k not in PACKING_ATTRS}
            new = xr.Variable(var.dims, text.astype(np.dtypes.StringDType()), attrs)
            ds = ds.assign_coords({name: new}) if name in ds.coords else ds.assign({name: new})
    return ds


@dataclass(frozen=True)
class FileAccess:
    """NetCDF files opened through fsspec, with the reader their first bytes call for."""

    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def open(self, url: str, **open_kwargs: Any) -> xr.Dataset:
        return open_netcdf_dataset(url, self.storage_options, **open_kwargs)

    def size(self, url: str, ds: xr.Dataset) -> int:
        fs, path = fsspec.core.url_to_fs(url, **self.storage_options)
        return int(fs.size(path))

    def direct(self, url: str) -> bool:
        return is_local(url)

    def run(self, url: str, work: Callable[[], T]) -> T:
        return work()


Access = SourceAccess | Mapping[str, Any] | None
"""A source's access, or the fsspec storage options of NetCDF files."""


def access_of(access: Access) -> SourceAccess:
    if access is None or isinstance(access, Mapping):
        return FileAccess(dict(access or {}))
    return access


def open_netcdf(url: str, access: Access = None, time: str | None = None) -> xr.Dataset:
    """Open one NetCDF source raw (values packed as stored), time decoded, names normalised.

    ``time``: the time axis to keep when the file has several (see
    :func:`choose_time_axis`); the names of what that leaves out are in the dataset's
    ``encoding["lake_dropped"]``."""
    ds, dropped = choose_time_axis(_open_raw(url, access), time, url)
    out = _unpack_float32_packing(_strings_to_unicode(normalise(ds, indexes=False)))
    out.encoding["lake_dropped"] = dropped
    return out


def time_axes_of(url: str, access: Access, variables: Sequence[str] | None) -> dict[str, list[str]]:
    """The time axes of one file, each with the data variables along it (see
    :func:`data_by_time_axis`)."""

    def axes() -> dict[str, list[str]]:
        with _open_raw(url, access) as ds:
            return data_by_time_axis(ds, variables)

    return access_of(access).run(url, axes)


def _open_raw(url: str, access: Access) -> xr.Dataset:
    return access_of(access).open(
        url, mask_and_scale=False, decode_times=True, decode_timedelta=False,
        create_default_indexes=False,  # halves the cost of opening a file
    )  # fmt: skip


def _float32_packed(var: xr.Variable) -> bool:
    return any(
        k in var.attrs and np.asarray(var.attrs[k]).dtype == np.float32
        for k in ("scale_factor", "add_offset")
    )


def _unpack_float32_packing(ds: xr.Dataset) -> xr.Dataset:
    """Decode variables packed with float32 ``scale_factor``/``add_offset``.

    xarray decodes those to float32. Zarr attributes are JSON, where the float32 type of the
    packing attributes is lost, so a packed copy would decode to float64 with different
    values. These variables are therefore stored decoded (float32, NaN for missing), which
    keeps the promise that the cube decodes to exactly the source's values.
    """
    for name, var in ds.variables.items():
        if _float32_packed(var):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=xr.SerializationWarning)
                decoded = xr.conventions.decode_cf_variable(
                    str(name), var, mask_and_scale=True, decode_times=False
                )
            ds[name] = decoded
    return ds


def _packing(var: xr.Variable) -> tuple[tuple[str, str], ...]:
    return tuple(
        (k, repr(np.asarray(var.attrs[k]).tolist())) for k in PACKING_ATTRS if k in var.attrs
    )


def _time_fix(url: str) -> str:
    return (
        f"give the time variable CF units such as 'days since 1950-01-01' "
        f"(e.g. `ncatted -a units,time,o,c,'days since 1950-01-01' {url}`)"
    )


def scan_file(
    url: str,
    access: Access = None,
    variables: Sequence[str] | None = None,
    size: int | None = None,
    time: str | None = None,
) -> SourceFile:
    """Open ``url`` and record its times, variable schema and static-variable digests
    (``size``: its size in bytes, if its listing already gave it; ``time``: the time axis
    to build along, when the file has several)."""
    ds = open_netcdf(url, access, time)
    shown = redact(url)
    try:
        if "time" not in ds.dims or "time" not in ds.variables:
            return _scan_static(ds, url, variables, size, access)
        axis = ds.variables["time"]
        if axis.dtype.kind not in "MO":
            units = axis.attrs.get("units")
            raise SourceError(
                shown,
                f"time has {'no units' if units is None else f'non-CF units {units!r}'}",
                _time_fix(shown),
            )
        with warnings.catch_warnings():  # dates past 2262 decode to cftime, as in xarray
            warnings.simplefilter("ignore", category=xr.SerializationWarning)
            times = np.asarray(axis.values)
        if not len(times):
            raise SourceError(
                shown,
                "has a time axis with no time steps",
                "remove the file (it holds no data), or rewrite it with its time steps",
            )
        if len(times) > 1:
            steps = times[1:] > times[:-1]
            if not np.all(steps):
                bad = int(np.argmin(steps)) + 1
                kind = "duplicate" if times[bad] == times[bad - 1] else "decreasing"
                raise SourceError(
                    shown,
                    f"has {kind} time steps at index {bad} ({times[bad - 1]} then {times[bad]})",
                    "fix the time axis of this file or remove it",
                )
        enc = ds["time"].encoding
        selected = set(variables) if variables else None
        schema: dict[str, VariableSchema] = {}
        statics: dict[str, str] = {}
        for key, var in ds.variables.items():
            name = str(key)
            if name == "time":
                continue
            if "time" in var.dims:
                if selected is not None and name not in selected and name not in ds.coords:
                    continue
                shape = tuple(
                    0 if d == "time" else n for d, n in zip(var.dims, var.shape, strict=True)
                )
                schema[name] = VariableSchema(
                    tuple(map(str, var.dims)),
                    shape,
                    str(var.dtype),
                    _packing(var),
                    source_name=var.encoding.get("source_name", name),
                    direct=var.dtype.kind in "iufb"
                    and not {"scale_factor", "add_offset"} & set(var.encoding),
                )
            else:
                statics[name] = digest(np.asarray(var.values))
        if selected is not None:
            missing = sorted(selected - set(schema))
            if missing:
                raise SourceError(
                    shown,
                    f"has no time-dependent variable(s) {', '.join(missing)}",
                    "correct the spec's `variables` list",
                )
        return SourceFile(
            url=url,
            times=times,
            time_units=str(enc.get("units", "")),
            calendar=str(enc.get("calendar", "standard")),
            variables=schema,
            statics=statics,
            size=size if size is not None else access_of(access).size(url, ds),
            dropped=tuple(ds.encoding.get("lake_dropped", ())),
        )
    finally:
        ds.close()


def _scan_static(
    ds: xr.Dataset,
    url: str,
    variables: Sequence[str] | None,
    size: int | None,
    access: Access,
) -> SourceFile:
    """The scan of a file with no time axis (a static layer: bathymetry, a mask, cell
    areas; or a climatology along its own ``month`` axis): its data variables are the
    cube's, whole; its coordinates are small arrays of the layout."""
    shown = redact(url)
    selected = set(variables) if variables else None
    schema: dict[str, VariableSchema] = {}
    statics: dict[str, str] = {}
    for key, var in ds.variables.items():
        name = str(key)
        if key in ds.coords or var.ndim == 0:
            statics[name] = digest(np.asarray(var.values))
        elif selected is None or name in selected:
            schema[name] = VariableSchema(
                tuple(map(str, var.dims)),
                tuple(var.shape),
                str(var.dtype),
                _packing(var),
                source_name=var.encoding.get("source_name", name),
                direct=var.dtype.kind in "iufb"
                and not {"scale_factor", "add_offset"} & set(var.encoding),
            )
    missing = sorted((selected or set()) - set(schema))
    if missing:
        raise SourceError(
            shown, f"has no data variable(s) {', '.join(missing)}", "correct the spec's `variables`"
        )
    if not schema:
        raise SourceError(
            shown,
            "has neither a time axis (axis 'T', standard_name 'time' or a variable named "
            "time) nor a data variable with dimensions",
            "only gridded data form a cube; remove this file",
        )
    return SourceFile(
        url=url,
        times=np.asarray([], dtype="datetime64[ns]"),
        time_units="",
        calendar="",
        variables=schema,
        statics=statics,
        size=size if size is not None else access_of(access).size(url, ds),
    )


def scan_files(
    files: Sequence[tuple[str, int | None]],
    access: Access = None,
    variables: Sequence[str] | None = None,
    time: str | None = None,
) -> list[SourceFile]:
    """:func:`scan_file` over several ``(url, size)`` (one task for many small files);
    local NetCDF-4 files laid out like the first one are scanned with h5py instead
    (:mod:`lake.cubes.likeness`), to the same result.

    A failure that is not a known fault of the file still names the file.
    """
    out = []
    how = access_of(access)
    likeness: Likeness | None = None
    learnt = False
    for url, size in files:
        local = isinstance(how, FileAccess) and how.direct(url)
        path = url.removeprefix("file://")
        if likeness is not None and local:
            quick = likeness.scan(url, path, size)
            if quick is not None:
                out.append(quick)
                continue
        try:
            info = how.run(url, lambda: scan_file(url, how, variables, size, time))  # noqa: B023
            out.append(info)
            if local and not learnt:  # learnt from the first local file only
                learnt = True
                likeness = Likeness.learn(path, info)
        except LakeError:
            raise
        except Exception as exc:
            raise LakeError(
                redact(url),
                f"could not be scanned: unexpected {type(exc).__name__}: {redact(str(exc))}",
                "check that it is a CF NetCDF dataset; rerun `lake build` with --debug for the "
                "traceback and report it with the file",
            ) from None
    return out


def read_block(
    index: SourceIndex,
    name: str,
    region: Mapping[str, slice],
    access: Access = None,
    time: str | None = None,
) -> np.ndarray:
    """Raw values of variable ``name`` for ``region`` (global time indices) from the files
    (a variable without a time axis: from the one file of its static layer)."""
    schema = index.variables[name]
    shape = [
        len(range(*region[d].indices(n))) if d in region else n
        for d, n in zip(schema.dims, schema.shape, strict=True)
    ]
    if "time" not in schema.dims:
        sel = {d: region[d] for d in schema.dims if d in region}
        whole = tuple(slice(None) for _ in shape)
        return _read_part(index.files[0], schema, name, sel, None, shape, whole,
                          access, time)  # fmt: skip
    tslice = region["time"]
    axis = schema.dims.index("time")
    shape[axis] = tslice.stop - tslice.start
    out: np.ndarray | None = None
    covered = 0
    for url, lo, hi, offset in index.locate(tslice.start, tslice.stop):
        sel = {d: region[d] for d in schema.dims if d != "time" and d in region}
        sel["time"] = slice(lo, hi)
        dest = tuple(slice(offset, offset + hi - lo) if i == axis else slice(None)
                     for i in range(len(shape)))  # fmt: skip
        out = _read_part(url, schema, name, sel, out, shape, dest, access, time)
        covered += hi - lo
    if out is None or covered != tslice.stop - tslice.start:
        raise SourceError(
            f"time steps {tslice.start}..{tslice.stop}",
            "are not covered by the source files",
            "restore the missing source files or delete the cube to rebuild it",
        )
    return out


def _read_part(
    url: str,
    schema: VariableSchema,
    name: str,
    sel: Mapping[str, slice],
    out: np.ndarray | None,
    shape: Sequence[int],
    dest: tuple[slice, ...],
    access: Access,
    time: str | None,
) -> np.ndarray:
    """Read ``sel`` of one file into ``out[dest]`` (``out`` made of ``shape`` if None) and
    return ``out``: straight from a local file when the variable is stored as read, else
    through xarray (whose decoded dtype the first file gives the block)."""
    how = access_of(access)
    try:
        if schema.direct and how.direct(url):
            if out is None:
                out = np.empty(shape, dtype=np.dtype(schema.dtype))
            read_direct(url.removeprefix("file://"), schema, sel, out, dest)
            return out

        def values_of() -> np.ndarray:
            ds = open_netcdf(url, how, time)
            try:
                return np.asarray(ds.variables[name].isel(sel).values)
            finally:
                ds.close()

        values = how.run(url, values_of)
        if out is None:
            out = np.empty(shape, dtype=values.dtype)
        out[dest] = values
        return out
    except LakeError:
        raise
    except Exception as exc:
        raise SourceError(
            redact(url),
            f"reading {name} failed, the file may be truncated or corrupt "
            f"({type(exc).__name__}: {redact(str(exc))})",
            _NETCDF_FIX,
        ) from None


@dataclass(frozen=True)
class NetcdfReader:
    """CF NetCDF-3/NetCDF-4 files named by globs, lists or fsspec URLs (``cube: {netcdf: ...}``).

    Registered as the ``netcdf`` cube source in :mod:`lake.registry`.
    """

    title: ClassVar[str] = "NetCDF files"
    patterns: tuple[str, ...]
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    variables: tuple[str, ...] | None = None
    time: str | None = None

    @classmethod
    def from_spec(cls, cube: CubeSource) -> NetcdfReader:
        variables = tuple(cube.variables) if cube.variables is not None else None
        options = with_retries(cube.patterns[0], cube.storage_options) if cube.patterns else {}
        return cls(tuple(cube.patterns), options, variables, cube.time)

    def list_files(self) -> dict[str, dict[str, Any] | None]:
        return list_sources(self.patterns, self.storage_options)

    def scan(self, files: Sequence[tuple[str, int | None]]) -> list[SourceFile]:
        return scan_files(files, self.storage_options, self.variables, self.time)

    def open(self, url: str) -> xr.Dataset:
        return open_netcdf(url, self.storage_options, self.time)

    def time_axes(self, url: str) -> dict[str, list[str]]:
        return time_axes_of(url, self.storage_options, self.variables)

    def read(self, index: SourceIndex, name: str, region: Mapping[str, slice]) -> np.ndarray:
        return read_block(index, name, region, self.storage_options, self.time)
