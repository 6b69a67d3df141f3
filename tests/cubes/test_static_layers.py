"""Cubes without a time axis: static layers and climatologies along a ``month`` axis, built
whole into ``maps``, replaced safely when their file changes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import netCDF4
import numpy as np
import pytest

from helpers import SHARED, assert_same, decoded_source, open_cube, spec_for
from lake.cubes import static
from lake.errors import SourceError
from lake.flows.cubes import build_cube
from lake.samples import write_daily_product
from lake.stac.catalog import write_catalogue
from lake.stac.validate import Schemas, validate_lake
from lake.stac.verify import verify_lake
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

pytestmark = pytest.mark.distributed

GEBCO = SHARED / "data" / "real" / "gridded" / "GEBCO_2020_erddap_subset.nc"


def _bathymetry(path: Path, ny: int, nx: int, offset: float = 0.0) -> Path:
    """A static layer as data centres publish it: packed int16 depth and a byte mask."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.title = "Generated bathymetry"
        nc.date_created = "2024-05-01T00:00:00Z"
        nc.createDimension("lat", ny)
        nc.createDimension("lon", nx)
        lat = nc.createVariable("lat", "f8", ("lat",))
        lat.units, lat.standard_name = "degrees_north", "latitude"
        lat[:] = np.linspace(30, 46, ny)
        lon = nc.createVariable("lon", "f8", ("lon",))
        lon.units, lon.standard_name = "degrees_east", "longitude"
        lon[:] = np.linspace(-6, 36, nx)
        depth = nc.createVariable("elevation", "i2", ("lat", "lon"), fill_value=np.int16(-32768))
        depth.units, depth.scale_factor = "m", 0.5
        grid = np.add.outer(np.arange(ny), np.arange(nx)).astype("f8")
        depth[:] = -grid * 3 - offset
        mask = nc.createVariable("mask", "i1", ("lat", "lon"))
        mask[:] = (grid % 7 == 0).astype("i1")
    return path


def _build(root: Path, source: Any, tmp: Path, client: Client, **cube: Any) -> Any:
    spec = spec_for(str(root), source, tmp, **cube)
    return spec, build_cube(client, Root(spec.root), spec.datasets[0])


def test_the_real_static_layer_builds_with_its_values_and_extent(
    tmp_path: Path, client: Client
) -> None:
    if not GEBCO.exists():
        pytest.skip(f"{GEBCO} is absent: the shared sample data sits beside the project root")
    spec, result = _build(tmp_path / "lake", str(GEBCO), tmp_path, client)
    assert result.static and result.added == {"maps": 1}
    assert not (tmp_path / "lake" / "cube" / "timeseries.zarr").exists()
    assert_same(open_cube(str(tmp_path / "lake" / "cube" / "maps.zarr")), decoded_source(GEBCO))
    root = Root(spec.root)
    write_catalogue(root, spec)
    item = json.loads((tmp_path / "lake" / "cube" / "items" / "cube.json").read_text())
    source = decoded_source(GEBCO)
    lat, lon = source["latitude"].values, source["longitude"].values
    assert item["bbox"] == pytest.approx([lon.min(), lat.min(), lon.max(), lat.max()])
    assert item["properties"]["datetime"]  # no time axis: dated by its build
    assert "time" not in item["properties"]["cube:dimensions"]
    assert item["properties"]["cube:variables"]["elevation"]["type"] == "data"
    assert verify_lake(root).ok
    schemas = SHARED / "schemas"
    if schemas.is_dir():
        _, problems = validate_lake(root, Schemas(schemas))
        assert not list(problems)
    _, again = _build(tmp_path / "lake", str(GEBCO), tmp_path, client)
    assert again.added == {}  # the same file: nothing written


def test_a_changed_layer_replaces_the_published_one(tmp_path: Path, client: Client) -> None:
    src = tmp_path / "src"
    src.mkdir()
    layer = _bathymetry(src / "bathy.nc", 1000, 1500)  # int16: 3 MB, three shards or more
    spec, _ = _build(tmp_path / "lake", str(layer), tmp_path, client,
                     chunking={"inner_chunk_mb": 0.1, "shard_mb": 1})  # fmt: skip
    maps = tmp_path / "lake" / "cube" / "maps.zarr"
    before = {p.relative_to(maps) for p in maps.rglob("*") if p.is_file()}
    layer.unlink()
    _bathymetry(layer, 120, 200, offset=10.0)  # a new grid, smaller: fewer shards
    _, result = _build(tmp_path / "lake", str(layer), tmp_path, client,
                       chunking={"inner_chunk_mb": 0.1, "shard_mb": 1})  # fmt: skip
    assert result.added == {"maps": 1}
    assert_same(open_cube(str(maps)), decoded_source(layer))
    after = {p.relative_to(maps) for p in maps.rglob("*") if p.is_file()}
    assert len(after) < len(before)  # the old grid's extra shards are gone
    assert not (tmp_path / "lake" / "cube" / ".maps.next.zarr").exists()
    write_catalogue(Root(spec.root), spec)
    assert verify_lake(Root(spec.root)).ok


def test_a_replacement_stopped_while_copying_is_completed(
    tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    layer = _bathymetry(src / "bathy.nc", 200, 300)
    _build(tmp_path / "lake", str(layer), tmp_path, client)
    layer.unlink()
    _bathymetry(layer, 200, 300, offset=10.0)
    copy = static._copy_over

    def stops(root: Root, staged: str, final: str) -> None:
        fs = root.fs()
        shards = [p for p in fs.find(root.path(staged)) if "/c/" in str(p)]
        fs.copy(shards[0], str(shards[0]).replace(staged, final))  # one shard, then stop
        raise KeyboardInterrupt

    monkeypatch.setattr(static, "_copy_over", stops)
    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path / "lake", str(layer), tmp_path, client)
    assert (tmp_path / "lake" / "cube" / ".maps.next.zarr").exists()
    monkeypatch.setattr(static, "_copy_over", copy)
    _, result = _build(tmp_path / "lake", str(layer), tmp_path, client)
    assert result.added == {}  # the recovered copy holds this file already
    assert_same(open_cube(str(tmp_path / "lake/cube/maps.zarr")), decoded_source(layer))
    assert not (tmp_path / "lake" / "cube" / ".maps.next.zarr").exists()


def test_a_climatology_along_month_is_one_map_per_month(tmp_path: Path, client: Client) -> None:
    path = tmp_path / "clim.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("month", 12)
        nc.createDimension("lat", 90)
        nc.createDimension("lon", 180)
        month = nc.createVariable("month", "i4", ("month",))
        month.long_name = "month of the year"
        month[:] = np.arange(1, 13)
        lat = nc.createVariable("lat", "f4", ("lat",))
        lat.units = "degrees_north"
        lat[:] = np.linspace(-89, 89, 90)
        lon = nc.createVariable("lon", "f4", ("lon",))
        lon.units = "degrees_east"
        lon[:] = np.linspace(1, 359, 180)
        sst = nc.createVariable("sst", "f4", ("month", "lat", "lon"), fill_value=np.float32(-999))
        sst.units = "degree_Celsius"
        values = np.random.default_rng(3).normal(15, 5, (12, 90, 180)).astype("f4")
        values[:, :5] = -999
        sst[:] = values
    _, result = _build(tmp_path / "lake", str(path), tmp_path, client)
    assert result.added == {"maps": 1}
    maps = tmp_path / "lake" / "cube" / "maps.zarr"
    assert_same(open_cube(str(maps)), decoded_source(path))
    meta = json.loads((maps / "sst" / "zarr.json").read_text())
    inner = meta["codecs"][0]["configuration"]["chunk_shape"]
    assert inner[0] == 1 and meta["chunk_grid"]["configuration"]["chunk_shape"][0] == 12


def test_layers_that_are_not_one_static_cube_are_refused(tmp_path: Path, client: Client) -> None:
    src = tmp_path / "src"
    src.mkdir()
    a, b = _bathymetry(src / "a.nc", 10, 10), _bathymetry(src / "b.nc", 10, 10)
    with pytest.raises(SourceError, match="a static layer is built from one file"):
        _build(tmp_path / "lake", [str(a), str(b)], tmp_path, client)
    daily = write_daily_product(tmp_path / "daily", days=1, ny=10, nx=12)
    with pytest.raises(SourceError, match="one without a time axis and one with"):
        _build(tmp_path / "lake", [str(a), str(daily[0])], tmp_path, client)
    with pytest.raises(SourceError, match="has one layout"):
        _build(tmp_path / "lake", str(a), tmp_path, client, layouts=["timeseries"])


def test_verify_finds_a_lost_shard_of_a_static_layer(tmp_path: Path, client: Client) -> None:
    layer = _bathymetry(tmp_path / "bathy.nc", 1000, 1500)
    spec, _ = _build(tmp_path / "lake", str(layer), tmp_path, client,
                     chunking={"inner_chunk_mb": 0.1, "shard_mb": 1})  # fmt: skip
    root = Root(spec.root)
    write_catalogue(root, spec)
    assert verify_lake(root).ok
    folder = tmp_path / "lake" / "cube" / "maps.zarr" / "elevation" / "c"
    shards = sorted(p for p in folder.rglob("*") if p.is_file())
    assert len(shards) > 1
    shards[-1].unlink()
    report = verify_lake(root)
    assert any("shard objects" in p.message for p in report.problems), report.problems


@pytest.mark.s3
def test_a_static_layer_is_replaced_on_s3(
    tmp_path: Path, client: Client, s3_endpoint: str, bucket: str
) -> None:
    import s3fs
    import xarray as xr

    options = {"endpoint_url": s3_endpoint}
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    layer = _bathymetry(tmp_path / "bathy.nc", 1000, 1500)
    fs.put_file(str(layer), f"{bucket}/static/bathy.nc")
    small = {"inner_chunk_mb": 0.1, "shard_mb": 1}
    source = f"s3://{bucket}/static/bathy.nc"
    spec = spec_for(
        f"s3://{bucket}/lake", source, tmp_path, storage_options=options, chunking=small
    )
    root = Root(spec.root, options)
    assert build_cube(client, root, spec.datasets[0]).added == {"maps": 1}
    layer.unlink()
    _bathymetry(layer, 120, 200, offset=10.0)
    fs.put_file(str(layer), f"{bucket}/static/bathy.nc")
    assert build_cube(client, root, spec.datasets[0]).added == {"maps": 1}
    fs.invalidate_cache()
    assert not fs.exists(f"{bucket}/lake/cube/.maps.next.zarr")
    cube = xr.open_zarr(f"s3://{bucket}/lake/cube/maps.zarr", storage_options=options).load()
    assert_same(cube, decoded_source(layer))


def test_a_layer_never_replaces_a_series(tmp_path: Path, client: Client) -> None:
    daily = write_daily_product(tmp_path / "daily", days=2, ny=10, nx=12)
    _build(tmp_path / "lake", [str(p) for p in daily], tmp_path, client)
    layer = _bathymetry(tmp_path / "bathy.nc", 10, 12)
    with pytest.raises(SourceError, match="the published cube cube has one"):
        _build(tmp_path / "lake", str(layer), tmp_path, client)
    assert_same(open_cube(str(tmp_path / "lake/cube/maps.zarr")), decoded_source(*daily))


def test_a_time_axis_without_steps_is_named(tmp_path: Path) -> None:
    from lake.cubes.netcdf import scan_file

    path = tmp_path / "empty.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", None)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.standard_name = "days since 1950-01-01", "time"
        nc.createVariable("sst", "f4", ("time",))
    with pytest.raises(SourceError, match="time axis with no time steps"):
        scan_file(str(path))
