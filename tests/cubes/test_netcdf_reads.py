"""Source checks without a cluster: scanning, ordering, time units."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import netCDF4
import numpy as np
import pandas as pd
import pytest

from lake.cubes.index import index_sources
from lake.cubes.netcdf import scan_file
from lake.cubes.timeaxis import choose_time_units, encode_times
from lake.errors import SourceError
from lake.samples import write_daily_product
from lake.sourcefiles import list_sources

if TYPE_CHECKING:
    from pathlib import Path


def test_files_are_ordered_by_time_not_name(tmp_path: Path) -> None:
    late = write_daily_product(tmp_path, start="2024-02-01", days=2, ny=4, nx=5, prefix="a")
    early = write_daily_product(tmp_path, start="2024-01-01", days=2, ny=4, nx=5, prefix="b")
    index = index_sources([scan_file(str(p)) for p in [*late, *early]])
    assert list(index.files) == [str(p) for p in [*early, *late]]
    assert index.offsets == (0, 1, 2, 3)
    assert index.locate(1, 3) == [(str(early[1]), 0, 1, 0), (str(late[0]), 0, 1, 1)]


def test_duplicate_steps_inside_one_file(tmp_path: Path) -> None:
    (path,) = write_daily_product(tmp_path, days=1, ny=4, nx=5)
    with netCDF4.Dataset(path, "a") as nc:
        nc["thetao"][1] = nc["thetao"][0]
        nc["time"][1] = nc["time"][0]
    with pytest.raises(SourceError, match=r"has duplicate time steps at index 1"):
        scan_file(str(path))


def test_grids_must_match_between_new_files(tmp_path: Path) -> None:
    a = write_daily_product(tmp_path, start="2024-01-01", days=1, ny=4, nx=5, prefix="a")
    b = write_daily_product(tmp_path, start="2024-01-02", days=1, ny=4, nx=6, prefix="b")
    with pytest.raises(SourceError) as info:
        index_sources([scan_file(str(p)) for p in [*a, *b]])
    message = str(info.value)
    assert b[0].name in message and "thetao" in message and "separate datasets" in message


def test_variables_must_match(tmp_path: Path) -> None:
    a = write_daily_product(tmp_path, start="2024-01-01", days=1, ny=4, nx=5, prefix="a")
    b = write_daily_product(tmp_path, start="2024-01-02", days=1, ny=4, nx=5, prefix="b")
    with netCDF4.Dataset(b[0], "a") as nc:
        nc.createVariable("so", "f4", ("time", "depth", "latitude", "longitude"))
    with pytest.raises(SourceError, match=r"has extra so compared with"):
        index_sources([scan_file(str(p)) for p in [*a, *b]])


def test_unmatched_glob(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="matches no file"):
        list_sources([str(tmp_path / "*.nc")], {})


@pytest.mark.parametrize(
    ("offsets", "source_units", "expected"),
    [
        (["0D", "1D"], "days since 1950-01-01", "days since 1950-01-01"),
        (["12h", "36h"], "days since 1950-01-01", "hours since 1950-01-01"),
        (["1s", "2s"], "hours since 1950-01-01", "seconds since 1950-01-01"),
        (["1ns", "3ns"], "days since 1950-01-01", "nanoseconds since 1950-01-01"),
    ],
)
def test_time_units_are_exact_integers(
    offsets: list[str], source_units: str, expected: str
) -> None:
    times = (pd.Timestamp("2000-01-01") + pd.to_timedelta(offsets)).to_numpy("datetime64[ns]")
    units = choose_time_units(times, source_units, "standard")
    assert units == expected
    encoded = encode_times(times, units, "standard")
    assert encoded is not None and encoded.dtype == np.int64


@pytest.mark.parametrize(("packed", "fmt"), [
    (False, "NETCDF4"),  # float32 with a fill value
    (True, "NETCDF4"),  # int16 with scale_factor and add_offset, read as stored
    (False, "NETCDF3_64BIT"),  # not HDF5: netCDF4 reads it
])  # fmt: skip
def test_blocks_hold_the_stored_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, packed: bool, fmt: str
) -> None:
    import xarray as xr

    from lake.cubes import netcdf, rawread

    made = write_daily_product(tmp_path / "made", days=3, ny=20, nx=30, depths=2, packed=packed)
    files = []
    for path in made:
        files.append(tmp_path / path.name)
        with xr.open_dataset(path, mask_and_scale=False) as ds:
            ds.to_netcdf(files[-1], format=fmt)  # type: ignore[call-overload]
    through_hdf5: list[bool] = []
    read_hdf5 = rawread.read_hdf5

    def spy(*args: Any) -> bool:
        through_hdf5.append(read_hdf5(*args))
        return through_hdf5[-1]

    monkeypatch.setattr(rawread, "read_hdf5", spy)
    index = index_sources([scan_file(str(p)) for p in files])
    assert index.variables["thetao"].direct
    region = {"time": slice(1, 3), "depth": slice(1, 2), "latitude": slice(5, 15),
              "longitude": slice(0, 30)}  # fmt: skip
    block = netcdf.read_block(index, "thetao", region)
    with xr.open_mfdataset(files, mask_and_scale=False) as ds:
        expected = ds["thetao"].isel(region).values
    assert block.dtype == expected.dtype
    assert np.array_equal(block, expected, equal_nan=True)
    assert through_hdf5 == [fmt == "NETCDF4"] * 2  # one file per time step
