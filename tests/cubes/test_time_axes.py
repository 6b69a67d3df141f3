"""Files with several time axes (OceanSITES moorings: ``TIME``, ``TIME_HR``, ``TIME_DY``):
the spec names the one a cube follows; what lies along the others is reported, not lost
silently, and without a choice the build says which axes there are."""

from __future__ import annotations

from typing import TYPE_CHECKING

import netCDF4
import numpy as np
import pytest
import xarray as xr

from helpers import assert_same, decoded_source, open_cube, spec_for
from lake.cubes.coords import normalise
from lake.errors import SourceError
from lake.flows.cubes import build_cube
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

pytestmark = pytest.mark.distributed


def _mooring(path: Path) -> None:
    with netCDF4.Dataset(path, "w") as nc:
        for name, size in (("TIME_HR", 48), ("TIME_DY", 2), ("DEPTH", 2)):
            nc.createDimension(name, size)
        for name, step in (("TIME_HR", 1 / 24), ("TIME_DY", 1.0)):
            var = nc.createVariable(name, "f8", (name,))
            var.setncatts({"units": "days since 1950-01-01", "axis": "T",
                           "standard_name": "time"})  # fmt: skip
            var[:] = 27000 + np.arange(nc.dimensions[name].size) * step
        depth = nc.createVariable("DEPTH", "f4", ("DEPTH",))
        depth.setncatts({"axis": "Z", "units": "m", "positive": "down", "standard_name": "depth"})
        depth[:] = [1.0, 10.0]
        for name, axis in (("TEMP", "TIME_HR"), ("TEMP_DY", "TIME_DY")):
            var = nc.createVariable(name, "f4", (axis, "DEPTH"), fill_value=99999.0)
            var.units = "degree_Celsius"
            var[:] = np.random.default_rng(len(name)).normal(13, 1, (nc.dimensions[axis].size, 2))
        lat = nc.createVariable("LATITUDE", "f4", ())
        lat.setncatts({"units": "degrees_north", "standard_name": "latitude"})
        lat.assignValue(43.4)
        lon = nc.createVariable("LONGITUDE", "f4", ())
        lon.setncatts({"units": "degrees_east", "standard_name": "longitude"})
        lon.assignValue(7.9)


def test_the_spec_names_the_time_axis(tmp_path: Path, client: Client) -> None:
    source = tmp_path / "mooring.nc"
    _mooring(source)
    root = Root(str(tmp_path / "lake"))
    with pytest.raises(SourceError, match=r"has 2 time axes \(TIME_HR, TIME_DY\)") as info:
        build_cube(client, root, spec_for(root.url, str(source), tmp_path).datasets[0])
    assert "`cube: {time: TIME_HR}`" in info.value.fix
    assert not (tmp_path / "lake" / "cube").exists()

    spec = spec_for(root.url, str(source), tmp_path, time="TIME_HR")
    result = build_cube(client, root, spec.datasets[0])
    assert result.ntime == 48
    (note,) = result.notes
    assert "TEMP_DY, TIME_DY" in note and "`cube.time`" in note
    assert result.report().notes == [note]
    with xr.open_dataset(source) as raw:
        expected = normalise(raw.drop_vars(["TIME_DY", "TEMP_DY"])).load()
    for layout in result.added:
        cube = open_cube(str(tmp_path / "lake" / "cube" / f"{layout}.zarr"))
        assert "TEMP_DY" not in cube.variables and cube.sizes["time"] == 48
        assert_same(cube, expected)

    other = spec_for(str(tmp_path / "other"), str(source), tmp_path, time="TIME")
    with pytest.raises(SourceError, match="has no time axis 'TIME'"):
        build_cube(client, Root(str(tmp_path / "other")), other.datasets[0])


def test_a_cf_climatology_axis_keeps_its_bounds(tmp_path: Path, client: Client) -> None:
    """CF 7.4: ``time`` with a ``climatology`` attribute naming its bounds (monthly means
    over 1961-1990): the bounds are stored like time and the attribute is kept."""
    source = tmp_path / "climatology.nc"
    with netCDF4.Dataset(source, "w") as nc:
        for name, size in (("time", 12), ("nv", 2), ("lat", 3), ("lon", 4)):
            nc.createDimension(name, size)
        time = nc.createVariable("time", "f8", ("time",))
        time.setncatts({"units": "days since 1961-01-01", "standard_name": "time",
                        "climatology": "climatology_bounds"})  # fmt: skip
        time[:] = 15 + 30 * np.arange(12)
        bounds = nc.createVariable("climatology_bounds", "f8", ("time", "nv"))
        bounds[:] = np.stack([30 * np.arange(12), 365 * 29 + 30 * np.arange(1, 13)], axis=1)
        for name, attrs in (
            ("lat", {"units": "degrees_north"}),
            ("lon", {"units": "degrees_east"}),
        ):
            var = nc.createVariable(name, "f8", (name,))
            var.setncatts(attrs)
            var[:] = np.arange(nc.dimensions[name].size)
        temp = nc.createVariable("temp", "f4", ("time", "lat", "lon"))
        temp.cell_methods = "time: mean within years time: mean over years"
        temp[:] = np.random.default_rng(0).normal(10, 2, (12, 3, 4))
    root = Root(str(tmp_path / "lake"))
    result = build_cube(client, root, spec_for(root.url, str(source), tmp_path).datasets[0])
    assert result.ntime == 12
    for layout in result.added:
        cube = open_cube(str(tmp_path / "lake" / "cube" / f"{layout}.zarr"))
        assert cube["time"].attrs["climatology"] == "climatology_bounds"
        assert_same(cube, decoded_source(source))
