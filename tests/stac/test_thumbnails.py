"""Collection thumbnails: large maps are averaged down to the picture's size before drawing."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from lake.stac.thumbnails import DISPLAY_CELLS, cube_thumbnail, display_field, published_key
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path


def _field(ny: int, nx: int) -> xr.DataArray:
    values = np.arange(ny * nx, dtype=np.float64).reshape(ny, nx)
    coords = {"latitude": np.linspace(30.0, 60.0, ny), "longitude": np.linspace(-20.0, 40.0, nx)}
    return xr.DataArray(values, dims=("latitude", "longitude"), coords=coords)


def test_display_field_averages_blocks_and_skips_land() -> None:
    field = _field(10, 7)
    field[0, 0] = np.nan  # land in the first block, which keeps its sea values' mean
    field[8:10, 3:6] = np.nan  # in the ragged edge, which is dropped
    small = display_field(field, cells=3)
    # ceil(10 / 3) = 4 rows and ceil(7 / 3) = 3 columns per block; ragged edges dropped.
    assert small.shape == (2, 2)
    first = field.values[0:4, 0:3]
    assert small.values[0, 0] == np.nanmean(first)
    assert np.isfinite(small.values).all()
    assert small["latitude"].values[0] == field["latitude"].values[0:4].mean()
    assert small["longitude"].values[1] == field["longitude"].values[3:6].mean()
    land = _field(10, 7)
    land[4:8, 3:6] = np.nan  # a whole block of land stays land
    assert np.isnan(display_field(land, cells=3).values[1, 1])


def test_display_field_leaves_small_maps_alone() -> None:
    field = _field(DISPLAY_CELLS, 12)
    assert display_field(field) is field
    big = display_field(_field(2 * DISPLAY_CELLS + 1, 3 * DISPLAY_CELLS))
    assert max(big.shape) <= DISPLAY_CELLS


def test_cube_thumbnail_of_a_large_map_is_a_png() -> None:
    import matplotlib.image

    field = _field(1500, 2100).expand_dims(time=pd.to_datetime(["2024-05-01"]))
    picture = cube_thumbnail(xr.Dataset({"sst": field}))
    assert picture is not None
    png = picture.draw()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.shape[0] > 100 and image.shape[1] > 100


def _key(field: xr.DataArray) -> str:
    picture = cube_thumbnail(xr.Dataset({"sst": field}))
    assert picture is not None
    return picture.key


def test_thumbnail_key_follows_what_is_shown(tmp_path: Path) -> None:
    field = _field(40, 60).expand_dims(time=pd.to_datetime(["2024-05-01"]))
    field.attrs["units"] = "degC"
    picture = cube_thumbnail(xr.Dataset({"sst": field}))
    assert picture is not None
    # The same picture has the same key; other values, units or day another one.
    assert _key(field.copy()) == picture.key
    changed = [
        field.where(field.latitude > field.latitude[3]),
        field.assign_attrs(units="K"),
        field.assign_coords(time=pd.to_datetime(["2024-05-02"])),
    ]
    for other in changed:
        assert _key(other) != picture.key
    # The key travels in the PNG, where the next build reads it.
    root = Root(str(tmp_path))
    path = root.path("thumbnail.png")
    assert published_key(root, path) is None
    root.put(path, picture.draw())
    assert published_key(root, path) == picture.key
    root.put(path, b"not a png")
    assert published_key(root, path) is None


def test_series_key_of_model_calendar_dates_is_by_value() -> None:
    def station() -> xr.Dataset:
        times = xr.date_range("2001-01-01", periods=5, freq="D", calendar="noleap",
                              use_cftime=True)  # fmt: skip
        temp = xr.DataArray(np.arange(5.0), dims="time", coords={"time": times})
        return xr.Dataset({"TEMP": temp})

    first, second = cube_thumbnail(station()), cube_thumbnail(station())
    assert first is not None and second is not None
    assert first.key == second.key


def _rgba(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGBA"
        return np.asarray(image)


def test_overview_pixels_tile_the_bbox_north_up_and_land_is_transparent() -> None:
    """The overview has no axes or margins: one pixel per cell, the north-west cell in the
    top-left pixel, land transparent; its key is the thumbnail's."""
    lat = np.arange(40.0, 50.5, 1.0)  # 11 rows, south to north
    lon = np.arange(-10.0, 0.5, 1.0)  # 11 columns
    values = np.tile(lat[:, None], (1, lon.size)) * 1.0  # brighter to the north
    values[0, -1] = np.nan  # land in the south-east corner
    coords = {"latitude": ("latitude", lat, {"units": "degrees_north"}),
              "longitude": ("longitude", lon, {"units": "degrees_east"})}  # fmt: skip
    field = xr.DataArray(values, dims=("latitude", "longitude"), coords=coords)
    bbox = [-10.0, 40.0, 0.0, 50.0]
    picture = cube_thumbnail(xr.Dataset({"sst": field}), bbox)
    assert picture is not None and picture.overview is not None
    data = picture.overview()
    rgba = _rgba(data)
    assert rgba.shape == (11, 11, 4)
    assert rgba[-1, -1, 3] == 0 and (rgba[..., 3] == 255).sum() == 120  # only the land
    # viridis: the north (high values) is yellow, the south dark.
    assert rgba[0, 0, :3].astype(int).sum() > rgba[-1, 0, :3].astype(int).sum()
    assert (rgba[0] == rgba[0, 0]).all()  # one row per latitude
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        assert image.text["lake-thumbnail"] == picture.key


def test_overview_of_a_grid_across_the_antimeridian_and_a_curvilinear_grid() -> None:
    from lake.stac.overview import binned

    lon = np.array([170.0, 175.0, 180.0, -175.0, -170.0])
    lat = np.array([-1.0, 1.0])
    values = np.tile(np.arange(5.0), (2, 1))
    grid = binned(values, lon, lat, [170.0, -1.0, -170.0, 1.0])
    assert grid is not None and grid.shape == (2, 5)
    assert grid[0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # west to east across 180°
    lon2, lat2 = np.meshgrid(np.linspace(-5, 5, 6), np.linspace(0, 10, 4))
    curvilinear = binned(lat2, lon2 + 0.1 * lat2, lat2, [-5.0, 0.0, 6.0, 10.0])
    assert curvilinear is not None and np.nanmax(curvilinear[0]) == 10.0  # north at the top


def test_station_series_has_no_overview() -> None:
    times = pd.date_range("2024-01-01", periods=50, freq="h")
    ds = xr.Dataset({"TEMP": (("time",), np.linspace(10, 12, 50), {"units": "degC"})},
                    coords={"time": times})  # fmt: skip
    picture = cube_thumbnail(ds, [7.9, 43.8, 7.9, 43.8])
    assert picture is not None and picture.overview is None
