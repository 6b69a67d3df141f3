"""Files laid out like the first of a batch are scanned with h5py: the same scans as
xarray's, and every file that differs in anything the scan depends on is scanned in full."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

import netCDF4
import numpy as np
import pytest

from lake.cubes import netcdf
from lake.cubes.netcdf import scan_file, scan_files
from lake.errors import SourceError
from lake.samples import write_daily_product

if TYPE_CHECKING:
    from pathlib import Path

    from lake.cubes.source import SourceFile


def _same(a: SourceFile, b: SourceFile) -> None:
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


def _scans(paths: list[Path], monkeypatch: pytest.MonkeyPatch) -> tuple[list[SourceFile], int]:
    """scan_files over ``paths``, and how many of them it scanned in full."""
    full = 0

    def counted(*args: Any, **kwargs: Any) -> SourceFile:
        nonlocal full
        full += 1
        return scan_file(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(netcdf, "scan_file", counted)
        out = scan_files([(str(p), None) for p in paths])
    return out, full


@pytest.mark.parametrize("packed", [True, False])
def test_files_alike_are_scanned_with_h5py_to_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, packed: bool
) -> None:
    files = write_daily_product(tmp_path, days=6, ny=20, nx=30, depths=3, packed=packed)
    with netCDF4.Dataset(files[3], "a") as nc:  # another history: global attributes differ
        nc.history = "reprocessed"
    scans, full = _scans(files, monkeypatch)
    assert full == 1
    for path, scan in zip(files, scans, strict=True):
        _same(scan, scan_file(str(path)))


def test_files_that_differ_are_scanned_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_daily_product(tmp_path, days=6, ny=20, nx=30)
    with netCDF4.Dataset(files[2], "a") as nc:  # another attribute of the data
        nc.variables["thetao"].comment = "bias corrected"
    with netCDF4.Dataset(files[3], "a") as nc:  # another grid: the digest tells
        nc.variables["latitude"][:] = nc.variables["latitude"][:] + 0.5
    with netCDF4.Dataset(files[4], "a") as nc:  # one more variable
        nc.createVariable("so", "f4", ("time", "depth", "latitude", "longitude"))
    scans, full = _scans(files, monkeypatch)
    assert full == 3  # the first, the one with another attribute, the one more variable
    for path, scan in zip(files, scans, strict=True):
        _same(scan, scan_file(str(path)))
    assert scans[3].statics["latitude"] != scans[0].statics["latitude"]


def test_a_bad_time_axis_gets_the_full_scans_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_daily_product(tmp_path, days=3, ny=20, nx=30)
    with netCDF4.Dataset(files[1], "a") as nc:
        time = nc.variables["time"]
        time[1] = time[0]  # a duplicate step
    with pytest.raises(SourceError, match="duplicate time steps"):
        scan_file(str(files[1]))
    with pytest.raises(SourceError, match="duplicate time steps"):
        _scans(files, monkeypatch)


def test_other_calendars_and_netcdf3_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = []
    for k, fmt in enumerate(["NETCDF4", "NETCDF4", "NETCDF3_CLASSIC", "NETCDF4"]):
        path = tmp_path / f"m{k}.nc"
        with netCDF4.Dataset(path, "w", format=fmt) as nc:
            nc.createDimension("time", None)
            nc.createDimension("bnds", 2)
            nc.createDimension("lat", 6)
            nc.createDimension("lon", 8)
            time = nc.createVariable("time", "f8", ("time",))
            time.setncatts({"units": "days since 1850-01-01", "calendar": "360_day",
                            "axis": "T", "bounds": "time_bnds"})  # fmt: skip
            lo = 30.0 * np.arange(3 * k, 3 * k + 3)
            time[:] = lo + 15
            nc.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = np.stack([lo, lo + 30], 1)
            lat = nc.createVariable("lat", "f8", ("lat",))
            lat.setncatts({"units": "degrees_north", "standard_name": "latitude"})
            lat[:] = np.linspace(-50, 50, 6)
            lon = nc.createVariable("lon", "f8", ("lon",))
            lon.setncatts({"units": "degrees_east", "standard_name": "longitude"})
            lon[:] = np.linspace(0, 350, 8)
            nc.createVariable("tos", "f4", ("time", "lat", "lon"))[:] = np.ones((3, 6, 8))
        paths.append(path)
    scans, full = _scans(paths, monkeypatch)
    assert full == 2  # the first and the NetCDF-3 file
    assert scans[3].times.dtype == object  # cftime dates of the 360-day calendar
    for path, scan in zip(paths, scans, strict=True):
        _same(scan, scan_file(str(path)))


def test_real_files_scan_alike_to_the_same_result(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each real NetCDF file that scans as a cube, twice in one batch: the second scan is
    learnt from the first, and the same (or, where h5py cannot vouch for it, a full scan)."""
    from lake.errors import LakeError

    alike = 0
    for path in sorted(shared_data.rglob("*.nc")):
        try:
            expected = scan_file(str(path))
        except LakeError:
            continue  # not a cube's file (a profile, a trajectory): its flow scans it
        scans, full = _scans([path, path], monkeypatch)
        alike += full == 1
        for scan in scans:
            _same(scan, expected)
    assert alike, "no real file was scanned by likeness"
