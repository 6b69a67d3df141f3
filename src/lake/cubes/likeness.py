"""Scans of local NetCDF-4 files laid out like one already scanned, read with h5py.

The daily files of a product differ in their time values, often in their global attributes
(dates of creation, history) and at times in the values of a static variable; rarely in
anything else. Opening a file through xarray to scan it costs 10-15 ms of CPU (measured on
a 1024 x 1440 daily map); reading its layout with h5py, about 1 ms. So a batch of files is
scanned in full (:func:`lake.cubes.netcdf.scan_file`) up to its first local NetCDF-4 file,
whose HDF5 layout is learnt as a :class:`Likeness`; every later file whose layout is the
same in every respect the scan depends on (each variable's name, type, shape apart from
the time axis, dimensions and attributes) gets the reference's scan with its own time
steps, static-variable digests and size.

The reference vouches for the shortcut: a likeness is learnt only where h5py's raw time
values decode, with xarray's own decoder, to exactly the times the full scan found, and
h5py's raw values of every static variable give exactly its digest. Any difference, or
anything the full scan would report (time steps not increasing), sends the file to the
full scan, which says what it found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from lake.cubes.source import digest

if TYPE_CHECKING:
    import h5py

    from lake.cubes.source import SourceFile

SKIPPED_ATTRS = frozenset({"DIMENSION_LIST", "REFERENCE_LIST"})
"""HDF5 object references between datasets: the same layout has other ones in every file."""

Layout = tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Likeness:
    """What a scan of one file learnt about its HDF5 layout (see the module's doc)."""

    reference: SourceFile
    layout: Layout
    time: str
    """The HDF5 dataset of the time coordinate."""
    statics: tuple[tuple[str, str], ...]
    """(the scan's name, the HDF5 dataset) of each static variable."""
    calendar: str | None
    """The time coordinate's ``calendar`` attribute (the same in every file alike)."""

    @classmethod
    def learn(cls, path: str, scanned: SourceFile) -> Likeness | None:
        """The likeness of the file at ``path`` that ``scanned`` describes, or None if h5py
        cannot reproduce that scan (not HDF5, decoded statics, an ambiguous variable)."""
        if not len(scanned.times):
            return None
        try:
            import h5py

            with h5py.File(path, "r") as file:
                return cls._learn(file, scanned)
        except (OSError, KeyError, ValueError, TypeError):
            return None

    @classmethod
    def _learn(cls, file: h5py.File, scanned: SourceFile) -> Likeness | None:
        time = _time_dataset(file, scanned)
        if time is None:
            return None
        layout = _layout(file, time)
        if layout is None:
            return None
        raw = _static_digests(file, time)
        statics = []
        for name, expected in scanned.statics.items():
            matches = [d for d, value in raw.items() if value == expected]
            if len(matches) != 1:  # decoded, or two variables of the same values
                return None
            statics.append((name, matches[0]))
        return cls(scanned, layout, time, tuple(statics), _text(file[time].attrs.get("calendar")))

    def scan(self, url: str, path: str, size: int | None) -> SourceFile | None:
        """The scan of ``path`` if its layout is this one's, else None."""
        try:
            import h5py

            with h5py.File(path, "r") as file:
                if _layout(file, self.time) != self.layout:
                    return None
                times = _decode(file[self.time], self.reference.time_units, self.calendar)
                statics = {name: digest(_raw(file[d])) for name, d in self.statics}
        except (OSError, KeyError, ValueError, TypeError):
            return None
        if times is None or times.dtype != self.reference.times.dtype or not len(times):
            return None
        if not np.all(times[1:] > times[:-1]):
            return None  # the full scan says what is wrong with the time axis
        return replace(
            self.reference,
            url=url,
            times=times,
            statics=statics,
            size=size if size is not None else os.path.getsize(path),
        )


def _path(name: str) -> str:
    """The HDF5 path of a root-group dataset, as a dimension scale names it."""
    return "/" + name.lstrip("/")


def _raw(dataset: h5py.Dataset) -> np.ndarray:
    return np.asarray(dataset[()])


def _attr(value: Any) -> tuple[str, str]:
    array = np.asarray(value)
    if array.dtype.kind == "S":
        return "S", repr([v.decode("utf-8", "replace") for v in np.ravel(array)])
    return array.dtype.str, repr(array.tolist())


def _dims(dataset: h5py.Dataset) -> tuple[str, ...] | None:
    """The names of the dimension scales along each axis (a scale along its own axis)."""
    names = []
    for axis in range(dataset.ndim):
        scales = dataset.dims[axis]
        if len(scales):
            names.append(str(scales[0].name))
        elif dataset.ndim == 1 and dataset.attrs.get("CLASS") == b"DIMENSION_SCALE":
            names.append(str(dataset.name))
        else:
            return None
    return tuple(names)


def _layout(file: h5py.File, time: str) -> Layout | None:
    """Every dataset of the root group: name, type, dimensions, shape with the time axis
    left out, attributes; None where a dimension cannot be told."""
    import h5py

    rows: list[tuple[Any, ...]] = []
    time_dim = _path(time)
    for name, item in sorted(file.items()):
        if not isinstance(item, h5py.Dataset):
            rows.append((name, "group"))
            continue
        dims = _dims(item)
        if dims is None:
            return None
        shape = tuple(-1 if d == time_dim else n for d, n in zip(dims, item.shape, strict=True))
        found = item.attrs
        attrs = tuple(sorted((k, *_attr(found[k])) for k in found
                             if k not in SKIPPED_ATTRS))  # fmt: skip
        rows.append((name, item.dtype.str, dims, shape, attrs))
    return tuple(rows)


def _time_dataset(file: h5py.File, scanned: SourceFile) -> str | None:
    """The one 1-D dataset whose raw values decode to the scan's times."""
    import h5py

    found = []
    for name, item in file.items():
        if not isinstance(item, h5py.Dataset) or item.ndim != 1:
            continue
        if _text(item.attrs.get("units")) != scanned.time_units or len(item) != len(scanned.times):
            continue
        times = _decode(item, scanned.time_units, _text(item.attrs.get("calendar")))
        if times is not None and times.dtype == scanned.times.dtype \
                and np.array_equal(times, scanned.times):  # fmt: skip
            found.append(name)
    return found[0] if len(found) == 1 else None


def _text(value: Any) -> Any:
    """An HDF5 attribute as text where it is bytes (as netCDF-4 writes some)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _decode(dataset: h5py.Dataset, units: str, calendar: str | None) -> np.ndarray | None:
    """Raw time values decoded as xarray decodes them when the scan opens a file."""
    import warnings

    import xarray as xr
    from xarray.coding.times import decode_cf_datetime

    raw = _raw(dataset)
    if raw.dtype.kind not in "iuf":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=xr.SerializationWarning)
        try:
            return np.asarray(decode_cf_datetime(raw, units, calendar))
        except Exception:
            return None


def _static_digests(file: h5py.File, time: str) -> dict[str, str]:
    """The digest of the raw values of every dataset not along the time axis."""
    import h5py

    time_dim = _path(time)
    out = {}
    for name, item in file.items():
        if not isinstance(item, h5py.Dataset) or name == time:
            continue
        dims = _dims(item)
        if dims is None or time_dim in dims or item.dtype.kind not in "iufb":
            continue
        out[name] = digest(_raw(item))
    return out
