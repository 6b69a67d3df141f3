"""Every CF calendar, exactly: time and its bounds stay integers in the source's units and
calendar, appends do not drift, and the catalogue and the thumbnail get real dates."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import netCDF4
import numpy as np
import pytest

from helpers import assert_same, decoded_source, open_cube, spec_for
from lake.flows.cubes import build_cube
from lake.stac.catalog import write_catalogue
from lake.stac.describe import real_dates
from lake.stac.verify import verify_lake
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

pytestmark = pytest.mark.distributed

CALENDARS = ["standard", "proleptic_gregorian", "noleap", "365_day", "all_leap", "366_day",
             "360_day", "julian"]  # fmt: skip
# Month lengths of each calendar, for bounds at month boundaries.
_DAYS = {"360_day": [30] * 12, "all_leap": [31, 29, *[31, 30, 31, 30, 31, 31, 30, 31, 30, 31]]}
_DAYS["366_day"] = _DAYS["all_leap"]

# Small grids get only the time-series layout by default; these tests need both.
BOTH = ["maps", "timeseries"]


def _month_days(calendar: str, year: int) -> list[int]:
    if calendar in _DAYS:
        return _DAYS[calendar]
    leap = year % 4 == 0
    if calendar not in ("noleap", "365_day", "julian"):
        leap = leap and (year % 100 != 0 or year % 400 == 0)
    if calendar in ("noleap", "365_day"):
        leap = False
    return [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def write_monthly(path: Path, calendar: str, first_month: int, months: int) -> None:
    """A CMIP-like monthly mean: ``tos(time, lat, lon)`` with ``time_bnds`` at month
    boundaries and time at mid-month, ``days since 1850-01-01`` in ``calendar``."""
    starts, ends = [], []
    day = 0.0
    for year in range(1850, 1850 + (first_month + months) // 12 + 2):
        for length in _month_days(calendar, year):
            starts.append(day)
            day += length
            ends.append(day)
    lo = np.asarray(starts[first_month : first_month + months])
    hi = np.asarray(ends[first_month : first_month + months])
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", None)
        nc.createDimension("bnds", 2)
        nc.createDimension("lat", 6)
        nc.createDimension("lon", 8)
        time = nc.createVariable("time", "f8", ("time",))
        time.setncatts({"units": "days since 1850-01-01", "calendar": calendar, "axis": "T",
                        "standard_name": "time", "bounds": "time_bnds"})  # fmt: skip
        time[:] = (lo + hi) / 2
        nc.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = np.stack([lo, hi], axis=1)
        lat = nc.createVariable("lat", "f8", ("lat",))
        lat.setncatts({"units": "degrees_north", "standard_name": "latitude", "axis": "Y"})
        lat[:] = np.linspace(-50, 50, 6)
        lon = nc.createVariable("lon", "f8", ("lon",))
        lon.setncatts({"units": "degrees_east", "standard_name": "longitude", "axis": "X"})
        lon[:] = np.linspace(0, 350, 8)
        tos = nc.createVariable("tos", "f4", ("time", "lat", "lon"), fill_value=1e20)
        tos.setncatts({"units": "degC", "standard_name": "sea_surface_temperature"})
        rng = np.random.default_rng(first_month)
        tos[:] = rng.normal(15, 5, (months, 6, 8)).astype("f4")


@pytest.mark.parametrize("calendar", CALENDARS)
def test_every_calendar_builds_appends_and_describes(
    calendar: str, tmp_path: Path, client: Client
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    first, second = src / "a.nc", src / "b.nc"
    write_monthly(first, calendar, 0, 14)
    write_monthly(second, calendar, 14, 10)
    root = Root(str(tmp_path / "lake"))
    spec = spec_for(root.url, [str(first)], tmp_path, layouts=BOTH)
    build_cube(client, root, spec.datasets[0])
    spec = spec_for(root.url, [str(first), str(second)], tmp_path, layouts=BOTH)
    appended = build_cube(client, root, spec.datasets[0])
    assert appended.added == {"maps": 10, "timeseries": 10}

    expected = decoded_source(first, second)
    # The source's reference date, in its unit unless a time is not a whole number of it
    # (mid-month of a 31-day month is 15.5 days): then the first unit in which all are.
    with netCDF4.Dataset(first) as a, netCDF4.Dataset(second) as b:
        raw = np.concatenate([a["time"][:], b["time"][:]])
    units = ("days" if np.all(raw == np.round(raw)) else "hours") + " since 1850-01-01"
    for layout in ("maps", "timeseries"):
        path = tmp_path / "lake" / "cube" / f"{layout}.zarr"
        cube = open_cube(str(path))
        assert_same(cube, expected)
        for name in ("time", "time_bnds"):
            meta = json.loads((path / name / "zarr.json").read_text())
            assert meta["data_type"] == "int64"
            assert meta["attributes"]["units"] == units
            assert meta["attributes"]["calendar"] == calendar

    write_catalogue(root, spec)
    collection = json.loads((tmp_path / "lake" / "cube" / "collection.json").read_text())
    dimension = collection["cube:dimensions"]["time"]
    reals = real_dates(expected["time"].values)
    assert dimension["extent"] == [
        f"{np.datetime_as_string(reals[0], unit='s')}Z",
        f"{np.datetime_as_string(reals[-1], unit='s')}Z",
    ]
    if calendar in ("standard", "proleptic_gregorian"):
        assert "calendar" not in dimension
    else:
        assert dimension["calendar"] == calendar
    assert (tmp_path / "lake" / "cube" / "thumbnail.png").is_file()
    assert not verify_lake(root).problems


def test_real_dates_are_the_nearest_real_ones() -> None:
    import cftime

    days = [cftime.Datetime360Day(2001, 2, 30, 12), cftime.DatetimeJulian(1900, 2, 29),
            cftime.DatetimeNoLeap(2000, 3, 1, 6, 30)]  # fmt: skip
    assert real_dates(np.asarray(days, dtype=object)).tolist() == [
        np.datetime64("2001-02-28T12:00:00"), np.datetime64("1900-02-28T00:00:00"),
        np.datetime64("2000-03-01T06:30:00"),
    ]  # fmt: skip
    plain = np.asarray(["2001-01-01"], dtype="datetime64[ns]")
    assert real_dates(plain) is plain


def test_a_real_cmip5_series_of_three_files(shared_data: Path, tmp_path: Path,
                                            client: Client) -> None:  # fmt: skip
    files = sorted((shared_data / "real" / "gridded" / "zostoga_hadgem2es").glob("*.nc"))
    assert len(files) == 3
    root = Root(str(tmp_path / "lake"))
    spec = spec_for(root.url, [str(f) for f in files], tmp_path, layouts=BOTH)
    result = build_cube(client, root, spec.datasets[0])
    expected = decoded_source(*files)
    assert result.ntime == expected.sizes["time"] == 1128 + 1467 + 934
    for layout in result.added:
        assert_same(open_cube(str(tmp_path / "lake" / "cube" / f"{layout}.zarr")), expected)
