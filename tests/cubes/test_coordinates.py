"""Coordinates by the CF rules: latitude and longitude by their units or standard names,
never by ``axis`` alone; index, projection and rotated-pole coordinates keep their names;
no name is renamed onto one that exists; the catalogue's bbox is in degrees, or unknown."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import netCDF4
import numpy as np
import pytest

from helpers import assert_same, decoded_source, open_cube, spec_for
from lake.cubes.coords import normalise
from lake.flows.cubes import build_cube
from lake.stac.catalog import write_catalogue
from lake.stac.extent import longitude_range
from lake.stac.verify import verify_lake
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

LAT = {"units": "degrees_north", "standard_name": "latitude"}
LON = {"units": "degrees_east", "standard_name": "longitude"}

# Small grids get only the time-series layout by default; these tests need both.
BOTH = ["maps", "timeseries"]


def _write(path: Path, dims: dict[str, int], coords: dict[str, tuple[tuple[str, ...], Any,
           dict[str, str]]], data_dims: tuple[str, ...]) -> None:  # fmt: skip
    """A file with ``time`` (2 days), the coordinates given and ``sst(time, *data_dims)``."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", None)
        for name, size in dims.items():
            nc.createDimension(name, size)
        time = nc.createVariable("time", "f8", ("time",))
        time.setncatts({"units": "days since 2020-01-01", "standard_name": "time"})
        time[:] = [0, 1]
        for name, (var_dims, values, attrs) in coords.items():
            var = nc.createVariable(name, "f8", var_dims)
            var.setncatts(attrs)
            var[:] = values
        sst = nc.createVariable("sst", "f4", ("time", *data_dims), fill_value=-999.0)
        sst.coordinates = " ".join(n for n, (d, _, _) in coords.items() if len(d) == 2)
        shape = (2, *[dims[d] for d in data_dims])
        sst[:] = np.arange(np.prod(shape), dtype="f4").reshape(shape)


def _grid2d(ny: int, nx: int, lon0: float, lat0: float) -> tuple[np.ndarray, np.ndarray]:
    lat, lon = np.meshgrid(lat0 + np.arange(ny) * 2.0, lon0 + np.arange(nx) * 3.0, indexing="ij")
    return lat, lon


def _cases() -> dict[str, Any]:
    lat2, lon2 = _grid2d(4, 5, lon0=100, lat0=-10)
    return {
        # CMIP curvilinear: cell indices nlat/nlon with axis Y/X, 2-D lat/lon in degrees.
        "index-dimensions": ({"nlat": 4, "nlon": 5}, {
            "nlat": (("nlat",), np.arange(4), {"axis": "Y", "units": "1",
                     "standard_name": "projection_y_coordinate"}),
            "nlon": (("nlon",), np.arange(5), {"axis": "X", "units": "1",
                     "standard_name": "projection_x_coordinate"}),
            "lat": (("nlat", "nlon"), lat2, LAT), "lon": (("nlat", "nlon"), lon2, LON),
        }, ("nlat", "nlon"), {"nlat", "nlon", "lat", "lon"}, [100.0, -10.0, 112.0, -4.0]),
        # Rotated pole: grid_latitude/grid_longitude in degrees, 2-D true positions.
        "rotated-pole": ({"rlat": 4, "rlon": 5}, {
            "rlat": (("rlat",), np.arange(4) * 0.5, {"axis": "Y", "units": "degrees",
                     "standard_name": "grid_latitude"}),
            "rlon": (("rlon",), np.arange(5) * 0.5, {"axis": "X", "units": "degrees",
                     "standard_name": "grid_longitude"}),
            "lat": (("rlat", "rlon"), lat2, LAT), "lon": (("rlat", "rlon"), lon2, LON),
        }, ("rlat", "rlon"), {"rlat", "rlon", "lat", "lon"}, [100.0, -10.0, 112.0, -4.0]),
        # Both 1-D lat/lon and 2-D latitude/longitude: nothing renamed onto them.
        "lat-and-latitude": ({"lat": 4, "lon": 5}, {
            "lat": (("lat",), np.arange(4) * 2.0 - 10, {**LAT, "axis": "Y"}),
            "lon": (("lon",), np.arange(5) * 3.0 + 100, {**LON, "axis": "X"}),
            "latitude": (("lat", "lon"), lat2, LAT), "longitude": (("lat", "lon"), lon2, LON),
        }, ("lat", "lon"), {"lat", "lon", "latitude", "longitude"},
            [100.0, -10.0, 112.0, -4.0]),
        # Projection x/y in metres with 2-D latitude/longitude.
        "projected": ({"y": 4, "x": 5}, {
            "y": (("y",), np.arange(4) * 1e4, {"axis": "Y", "units": "m",
                  "standard_name": "projection_y_coordinate"}),
            "x": (("x",), np.arange(5) * 1e4, {"axis": "X", "units": "m",
                  "standard_name": "projection_x_coordinate"}),
            "latitude": (("y", "x"), lat2, LAT), "longitude": (("y", "x"), lon2, LON),
        }, ("y", "x"), {"x", "y", "latitude", "longitude"}, [100.0, -10.0, 112.0, -4.0]),
        # 0-360 longitudes of a regional grid across the antimeridian.
        "antimeridian": ({"lat": 3, "lon": 6}, {
            "lat": (("lat",), [10.0, 11.0, 12.0], LAT),
            "lon": (("lon",), [170.0, 174.0, 178.0, 182.0, 186.0, 190.0], LON),
        }, ("lat", "lon"), {"latitude", "longitude"}, [170.0, 10.0, -170.0, 12.0]),
        # 0-360 longitudes of the whole globe.
        "global-0-360": ({"lat": 3, "lon": 8}, {
            "lat": (("lat",), [-60.0, 0.0, 60.0], LAT),
            "lon": (("lon",), np.arange(8) * 45.0, LON),
        }, ("lat", "lon"), {"latitude", "longitude"}, [-180.0, -60.0, 180.0, 60.0]),
        # Cell indices only: where the data lie is unknown.
        "no-geography": ({"j": 3, "i": 4}, {
            "j": (("j",), np.arange(3), {"axis": "Y"}), "i": (("i",), np.arange(4), {"axis": "X"}),
        }, ("j", "i"), {"j", "i"}, None),
    }  # fmt: skip


@pytest.mark.distributed
@pytest.mark.parametrize("case", sorted(_cases()))
def test_coordinates_keep_their_meaning(case: str, tmp_path: Path, client: Client) -> None:
    dims, coords, data_dims, names, bbox = _cases()[case]
    source = tmp_path / "src.nc"
    _write(source, dims, coords, data_dims)
    root = Root(str(tmp_path / "lake"))
    spec = spec_for(root.url, str(source), tmp_path, layouts=BOTH)
    build_cube(client, root, spec.datasets[0])
    write_catalogue(root, spec)
    expected = decoded_source(source)
    for layout in ("maps", "timeseries"):
        cube = open_cube(str(tmp_path / "lake" / "cube" / f"{layout}.zarr"))
        assert names <= set(cube.variables), sorted(cube.variables)
        assert_same(cube, expected)
    collection = json.loads((tmp_path / "lake" / "cube" / "collection.json").read_text())
    if bbox is None:
        assert "unknown" in collection["lake:spatial_extent"]
    else:
        assert "lake:spatial_extent" not in collection
        assert collection["extent"]["spatial"]["bbox"] == [bbox]
    assert not verify_lake(root).problems


def test_known_geographic_names_are_still_normalised() -> None:
    import xarray as xr

    ds = xr.Dataset(
        {"TEMP": (("TIME", "DEPTH", "LATITUDE", "LONGITUDE"), np.zeros((1, 1, 1, 1)))},
        coords={
            "TIME": ("TIME", [0.0], {"axis": "T"}),
            "DEPTH": ("DEPTH", [5.0], {"axis": "Z", "positive": "down", "units": "m"}),
            "LATITUDE": ("LATITUDE", [43.0], {"units": "degrees_north"}),
            "LONGITUDE": ("LONGITUDE", [7.0], {"units": "degrees_east"}),
        },
    )
    assert set(normalise(ds).dims) == {"time", "depth", "latitude", "longitude"}


def test_coordinates_along_a_shared_dimension_keep_it() -> None:
    """Profiles: LATITUDE(N_PROF), LONGITUDE(N_PROF), JULD(N_PROF) must not rename N_PROF."""
    import xarray as xr

    ds = xr.Dataset(coords={
        "JULD": ("N_PROF", [1.0, 2.0], {"standard_name": "time", "axis": "T"}),
        "LATITUDE": ("N_PROF", [1.0, 2.0], {"units": "degree_north"}),
        "LONGITUDE": ("N_PROF", [3.0, 4.0], {"units": "degree_east"}),
        "PRES": (("N_PROF", "N_LEVELS"), np.ones((2, 3)), {"axis": "Z", "units": "decibar"}),
    })  # fmt: skip
    out = normalise(ds)
    assert set(out.dims) == {"N_PROF", "N_LEVELS"}
    assert {"time", "latitude", "longitude", "PRES"} <= set(out.variables)


def test_longitude_ranges() -> None:
    assert longitude_range(np.arange(0, 360, 0.5)) == (-180.0, 180.0)
    assert longitude_range(np.arange(-10.0, 20.0)) == (-10.0, 19.0)
    assert longitude_range(np.arange(170.0, 190.0)) == (170.0, -171.0)
    assert longitude_range(np.array([200.0])) == (-160.0, -160.0)
    assert longitude_range(np.array([np.nan])) is None


@pytest.mark.distributed
@pytest.mark.parametrize(
    "name",
    [
        "tos_Omon_CESM2-FV2_historical_r1i1p1f1_gn_200001.nc",
        "tos_Omon_BCC-CSM2-HR_hist-1950_r1i1p1f1_gn_198001.nc",
    ],
)
def test_real_cmip6_curvilinear_and_365_day(name: str, shared_data: Path, tmp_path: Path,
                                            client: Client) -> None:  # fmt: skip
    source = shared_data / "real" / "gridded" / name
    root = Root(str(tmp_path / "lake"))
    spec = spec_for(root.url, str(source), tmp_path, layouts=BOTH)
    build_cube(client, root, spec.datasets[0])
    write_catalogue(root, spec)
    expected = decoded_source(source)
    for layout in ("maps", "timeseries"):
        assert_same(open_cube(str(tmp_path / "lake" / "cube" / f"{layout}.zarr")), expected)
    collection = json.loads((tmp_path / "lake" / "cube" / "collection.json").read_text())
    west, south, east, north = collection["extent"]["spatial"]["bbox"][0]
    assert (west, east) == (-180.0, 180.0) and -90 < south < -75 and 89 < north <= 90
    assert collection["cube:dimensions"]["time"]["calendar"] in ("noleap", "365_day")
    assert (tmp_path / "lake" / "cube" / "thumbnail.png").is_file()
    assert not verify_lake(root).problems
    _cut_a_curvilinear_cube(tmp_path / "lake", expected)


def _cut_a_curvilinear_cube(lake_root: Path, expected: Any) -> None:
    """lake.open_cube on 2-D latitude/longitude (0-360 or -180-180) and a non-standard
    calendar: every cell inside the bbox is in the cut, values as a direct read; a point
    is the nearest cell; a subset to NetCDF keeps the calendar."""
    import numpy as np

    import lake

    def widest(units: str) -> Any:  # the 2-D positions, as the reader picks them
        found = [v for v in expected.coords.values() if v.attrs.get("units") == units]
        return max(found, key=lambda v: v.ndim)

    lat, lon = widest("degrees_north"), widest("degrees_east")
    box = (-30.0, 30.0, 0.0, 60.0)
    cut = lake.open_cube(lake_root, "cube", bbox=box, time=str(expected.time.values[0])[:7])
    inside = (lat >= 30) & (lat <= 60) & (((lon + 30) % 360) <= 30)
    assert int(inside.sum()) > 0
    got_lat, got_lon = cut[str(lat.name)], cut[str(lon.name)]
    got = (got_lat >= 30) & (got_lat <= 60) & (((got_lon + 30) % 360) <= 30)
    assert int(got.sum()) == int(inside.sum())  # no cell of the bbox left out
    name = "tos"

    def cells(var: Any, mask: Any) -> Any:
        stacked = var.stack(cell=mask.dims)
        return np.sort(stacked.values[..., mask.stack(cell=mask.dims).values].ravel())

    np.testing.assert_array_equal(cells(cut[name].load(), got), cells(expected[name], inside))
    point = lake.open_cube(lake_root, "cube", bbox=(-40.0, 45.0, -40.0, 45.0))
    distance = (lat - 45) ** 2 + ((((lon + 40) + 180) % 360 - 180) * np.cos(np.radians(45))) ** 2
    nearest = np.unravel_index(int(np.nanargmin(distance.values)), distance.shape)
    assert float(point[str(lat.name)]) == float(lat.values[nearest])
    out = lake_root.parent / "cut.nc"
    lake.subset(lake_root, "cube", str(out), bbox=box)
    import xarray as xr

    with xr.open_dataset(out) as written:
        assert written.time.encoding["calendar"] in ("noleap", "365_day")
