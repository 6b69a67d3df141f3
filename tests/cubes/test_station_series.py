"""Station series: one time-series layout of a few objects, appends that rewrite only the
last shard, and published layouts that keep their chunks and copies on later builds."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from helpers import assert_same, decoded_source, open_cube, spec_for
from lake.cubes.chunking import STATION_LOCATIONS, default_layouts, plan_chunks
from lake.cubes.source import VariableSchema
from lake.flows.cubes import build_cube
from lake.samples import write_mooring
from lake.spec import Chunking
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

DECADE_HOURS = 87_648  # 2014-01-01 to 2024-01-01


def _schema(dims: tuple[str, ...], shape: tuple[int, ...]) -> dict[str, VariableSchema]:
    return {"v": VariableSchema(dims, shape, "float32", ())}


def test_layouts_follow_the_shape() -> None:
    assert default_layouts(_schema(("time", "depth"), (0, 5))) == ["timeseries"]
    assert default_layouts(_schema(("time",), (0,))) == ["timeseries"]
    few = _schema(("time", "station", "depth"), (0, STATION_LOCATIONS, 5))
    assert default_layouts(few) == ["timeseries"]
    grid = _schema(("time", "latitude", "longitude"), (0, 10, 12))
    assert default_layouts(grid) == ["maps", "timeseries"]


def test_a_station_decade_is_one_chunk_per_depth_and_one_shard() -> None:
    plan = plan_chunks(("time", "depth"), (DECADE_HOURS, 5), 4, "timeseries", Chunking())
    assert plan.chunks[0] >= DECADE_HOURS and plan.chunks[1] == 1
    assert plan.shards == (plan.chunks[0], 5)
    # An explicit time block is kept as given.
    given = plan_chunks(("time", "depth"), (DECADE_HOURS, 5), 4, "timeseries",
                        Chunking(timeseries_time=256))  # fmt: skip
    assert given.chunks == (256, 1)


def test_large_maps_keep_their_time_series_blocks() -> None:
    dims, shape = ("time", "depth", "latitude", "longitude"), (365, 10, 1000, 1400)
    plan = plan_chunks(dims, shape, 4, "timeseries", Chunking())
    assert plan.chunks[0] == plan.shards[0] == 128
    assert plan.shards[1] == 1


def _objects(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.distributed
def test_hourly_decade_at_a_station_is_a_few_objects(tmp_path: Path, client: Client) -> None:
    src = tmp_path / "src"
    depths = (5.0, 10.0, 50.0, 100.0, 200.0)
    files = write_mooring(src, start="2014-01-01", months=120, depths=depths, months_per_file=60)
    spec = spec_for(str(tmp_path / "lake"), str(src / "*.nc"), tmp_path)
    result = build_cube(client, Root(spec.root), spec.datasets[0])
    assert result.added == {"timeseries": DECADE_HOURS}
    cube_dir = tmp_path / "lake" / "cube"
    assert not (cube_dir / "maps.zarr").exists()
    objects = _objects(cube_dir / "timeseries.zarr")
    assert len(objects) <= 40, len(objects)
    # One depth's full series is one object (a shard holding every depth).
    assert len(_objects(cube_dir / "timeseries.zarr" / "TEMP" / "c")) == 1
    assert_same(open_cube(str(cube_dir / "timeseries.zarr")), decoded_source(*files))


@pytest.mark.distributed
def test_an_append_rewrites_only_the_last_shard(tmp_path: Path, client: Client) -> None:
    src = tmp_path / "src"
    files = write_mooring(src, start="2024-01-01", months=2, depths=(5.0, 50.0))
    spec = spec_for(str(tmp_path / "lake"), [str(files[0])], tmp_path)
    build_cube(client, Root(spec.root), spec.datasets[0])
    temp = tmp_path / "lake" / "cube" / "timeseries.zarr" / "TEMP"
    before = {p: p.stat().st_mtime_ns for p in _objects(temp / "c")}
    spec = spec_for(str(tmp_path / "lake"), [str(f) for f in files], tmp_path)
    result = build_cube(client, Root(spec.root), spec.datasets[0])
    assert result.added == {"timeseries": len(decoded_source(files[1]).time)}
    after = {p: p.stat().st_mtime_ns for p in _objects(temp / "c")}
    assert len(after) == len(before) == 1  # the one shard, rewritten in place
    assert_same(open_cube(str(temp.parent)), decoded_source(*files))


@pytest.mark.distributed
def test_published_layouts_keep_their_chunks_and_copies(tmp_path: Path, client: Client) -> None:
    """A cube built with other chunks (an earlier default) or both layouts is extended as
    it was published when the spec names neither."""
    src = tmp_path / "src"
    files = write_mooring(src, start="2024-01-01", months=2, depths=(5.0, 50.0))
    first = spec_for(str(tmp_path / "lake"), [str(files[0])], tmp_path,
                     layouts=["maps", "timeseries"], chunking={"timeseries_time": 128})  # fmt: skip
    build_cube(client, Root(first.root), first.datasets[0])
    doc = tmp_path / "lake" / "cube" / "timeseries.zarr" / "TEMP" / "zarr.json"
    grid = json.loads(doc.read_text())["chunk_grid"]
    spec = spec_for(str(tmp_path / "lake"), [str(f) for f in files], tmp_path)
    result = build_cube(client, Root(spec.root), spec.datasets[0])
    added = len(decoded_source(files[1]).time)
    assert result.added == {"maps": added, "timeseries": added}
    assert json.loads(doc.read_text())["chunk_grid"] == grid
    for layout in ("maps", "timeseries"):
        cube = open_cube(str(tmp_path / "lake" / "cube" / f"{layout}.zarr"))
        assert_same(cube, decoded_source(*files))
