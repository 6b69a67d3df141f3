"""Files with several time axes (OceanSITES moorings: ``TIME``, ``TIME_HR``, ``TIME_DY``):
the spec names the one a cube follows; what lies along the others is reported, not lost
silently, and without a choice the build says which axes there are."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import netCDF4
import numpy as np
import pytest
import xarray as xr

import lake
from helpers import SHARED, assert_same, decoded_source, open_cube, spec_for
from lake.cubes.coords import normalise
from lake.errors import SourceError
from lake.flows.cubes import build_cube
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

pytestmark = pytest.mark.distributed


def _mooring(path: Path, hourly_data: bool = True, daily_data: bool = True) -> None:
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
        data = [("TEMP", "TIME_HR")] * hourly_data + [("TEMP_DY", "TIME_DY")] * daily_data
        for name, axis in data:
            var = nc.createVariable(name, "f4", (axis, "DEPTH"), fill_value=99999.0)
            var.units = "degree_Celsius"
            var[:] = np.random.default_rng(len(name)).normal(13, 1, (nc.dimensions[axis].size, 2))
        serial = nc.createVariable("SENSOR_SERIAL", "i4", ("DEPTH",))
        serial.long_name = "serial number of the sensor at each depth"
        serial[:] = [1201, 1202]
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


def test_without_a_choice_each_time_axis_is_a_cube(
    tmp_path: Path, client: Client, schema_registry: object
) -> None:
    """Built through the API with no `cube.time`: one dataset per time axis with data,
    ``<id>-<axis>``, each catalogued; what lies along no time axis is in both."""
    source = tmp_path / "mooring.nc"
    _mooring(source)
    spec = spec_for(str(tmp_path / "lake"), str(source), tmp_path)
    planned = lake.plan(spec, scheduler=client.scheduler.address)
    assert [p.id for p in planned] == ["cube-time_hr", "cube-time_dy"]
    report = lake.build(spec, scheduler=client.scheduler.address, progress=False)
    hourly, daily = report.datasets
    assert (hourly.id, hourly.holds, daily.id, daily.holds) == (
        "cube-time_hr", 48, "cube-time_dy", 2)  # fmt: skip
    assert hourly.notes == ["cube-time_hr: the cube along TIME_HR, one of its files' time "
                            "axes; the others are cube-time_dy"]  # fmt: skip
    with xr.open_dataset(source) as raw:
        along = {"cube-time_hr": normalise(raw.drop_vars(["TIME_DY", "TEMP_DY"])).load(),
                 "cube-time_dy": normalise(raw.drop_vars(["TIME_HR", "TEMP"])).load()}  # fmt: skip
    for dataset_id, expected in along.items():
        for layout in ("timeseries",):  # a single station: one layout
            cube = open_cube(str(tmp_path / "lake" / dataset_id / f"{layout}.zarr"))
            assert set(cube.data_vars) == set(expected.data_vars)
            assert "SENSOR_SERIAL" in cube.data_vars  # along no time axis: in both
            assert_same(cube, expected)
    catalogue = json.loads((tmp_path / "lake" / "catalog.json").read_text())
    children = [link["href"] for link in catalogue["links"] if link["rel"] == "child"]
    assert children == ["./cube-time_hr/collection.json", "./cube-time_dy/collection.json"]
    collection = json.loads((tmp_path / "lake" / "cube-time_dy" / "collection.json").read_text())
    assert collection["title"] == "cube (along TIME_DY)"
    assert lake.verify(report.root).ok
    if SHARED.exists():
        assert lake.validate(report.root, schemas=SHARED / "schemas").ok

    # `only` names the spec's dataset (both cubes) or one of the cubes; a rerun writes nothing.
    again = lake.build(spec, only="cube", scheduler=client.scheduler.address, progress=False)
    assert [d.id for d in again.datasets] == ["cube-time_hr", "cube-time_dy"]
    assert not any(d.changed for d in again.datasets)
    one = lake.build(spec, only="cube-time_dy", scheduler=client.scheduler.address, progress=False)
    assert [d.id for d in one.datasets] == ["cube-time_dy"]


def test_an_axis_without_data_builds_nothing(tmp_path: Path, client: Client) -> None:
    """A daily axis holding no variable (or none of the spec's `variables`) is no cube: the
    one axis with data is built under the dataset's own id."""
    source = tmp_path / "mooring.nc"
    _mooring(source, daily_data=False)
    report = lake.build(spec_for(str(tmp_path / "lake"), str(source), tmp_path),
                        scheduler=client.scheduler.address, progress=False)  # fmt: skip
    (cube,) = report.datasets
    assert (cube.id, cube.holds) == ("cube", 48)

    both = tmp_path / "both.nc"
    _mooring(both)
    spec = spec_for(str(tmp_path / "other"), str(both), tmp_path, variables=["TEMP_DY"])
    (daily,) = lake.build(spec, scheduler=client.scheduler.address, progress=False).datasets
    assert (daily.id, daily.holds) == ("cube", 2)


def test_a_cube_id_taken_by_another_dataset_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "mooring.nc"
    _mooring(source)
    spec = spec_for(str(tmp_path / "lake"), str(source), tmp_path)
    first = spec.datasets[0]
    assert first.cube is not None
    other = first.model_copy(
        update={"id": "cube-time_dy", "cube": first.cube.model_copy(update={"time": "TIME_HR"})}
    )
    spec = spec.model_copy(update={"datasets": [spec.datasets[0], other]})
    with pytest.raises(lake.errors.SpecError, match="'cube-time_dy' is also the id") as info:
        lake.build(spec, progress=False)
    assert "cube.time" in info.value.fix
    assert not (tmp_path / "lake").exists()
