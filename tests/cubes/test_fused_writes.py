"""Blocks that write both layouts from one read of the sources: planned where a time block
of the whole map fits a few shards, and the same cube, byte for byte in its values, as the
shard-by-shard writes (the time-series copy read back from the maps copy)."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

import lake.flows.cubes as cube_flow
from helpers import assert_same, decoded_source, open_cube, spec_for
from lake.cubes.chunking import FUSED_SHARDS, MB, fused_block, plan_chunks
from lake.samples import write_daily_product
from lake.spec import Chunking
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

DIMS = ("time", "depth", "latitude", "longitude")


def _plans(shape: tuple[int, ...], chunking: Chunking) -> tuple[Any, Any]:
    return (plan_chunks(DIMS, shape, 4, "maps", chunking),
            plan_chunks(DIMS, shape, 4, "timeseries", chunking))  # fmt: skip


@pytest.mark.parametrize(
    "shape", [(340, 1, 1024, 1440), (85, 4, 1024, 1440), (365, 1, 100, 120), (3650, 8, 300, 400)]
)
def test_regional_grids_get_maps_shards_that_tile_the_time_series_blocks(
    shape: tuple[int, ...],
) -> None:
    chunking = Chunking()
    maps, series = _plans(shape, chunking)
    block = fused_block(DIMS, maps, series, shape)
    assert block is not None
    for dim, m, t in zip(DIMS, maps.shards, series.shards, strict=True):
        if dim in ("time", "depth"):
            assert block[dim] % m == 0 and block[dim] % t == 0
    assert all(s % c == 0 for s, c in zip(maps.shards, maps.chunks, strict=True))
    assert math.prod(maps.shards) * 4 <= chunking.shard_mb * MB
    assert math.prod(block.values()) * 4 <= FUSED_SHARDS * chunking.shard_mb * MB


@pytest.mark.parametrize(
    ("shape", "chunking"),
    [
        ((3650, 50, 2160, 4320), Chunking()),  # a global grid: a time block is 4.8 GB
        ((150, 1, 1024, 1440), Chunking(shard_mb=32, timeseries_time=128)),
        ((40, 1, 300, 400), Chunking(maps_time_per_shard=3, timeseries_time=8)),  # as asked
    ],
)
def test_no_joint_block_where_it_would_not_fit_or_shards_do_not_tile(
    shape: tuple[int, ...], chunking: Chunking
) -> None:
    maps, series = _plans(shape, chunking)
    assert fused_block(DIMS, maps, series, shape) is None


@pytest.mark.distributed
def test_joint_blocks_write_the_same_cube_as_shard_by_shard_writes(
    tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    files = write_daily_product(src, start="2024-01-01", days=200, ny=60, nx=80, depths=2)
    # int16 values: maps shards of 48 steps and 2 depth levels, time-series shards of 8
    # steps, so blocks of 48 steps.
    chunking = {"shard_mb": 1, "timeseries_time": 8, "inner_chunk_mb": 0.06}
    joint: list[int] = []
    fused_writes = cube_flow._fused_writes

    def counted(*args: Any) -> Any:
        for item in fused_writes(*args):
            joint.append(len(item[1]))
            yield item

    monkeypatch.setattr(cube_flow, "_fused_writes", counted)
    staging = {name: tmp_path / f"staging-{name}" for name in ("joint", "apart")}
    for batch in (files[:100], files[100:]):  # a first build, then an append
        for name, folder in staging.items():
            folder.mkdir(exist_ok=True)
            for f in batch:
                os.link(f, folder / f.name)
            spec = spec_for(str(tmp_path / name), str(folder / "*.nc"), tmp_path,
                            chunking=chunking)  # fmt: skip
            with monkeypatch.context() as patch:
                if name == "apart":
                    patch.setattr(cube_flow, "fused_block", lambda *a: None)
                result = cube_flow.build_cube(client, Root(spec.root), spec.datasets[0])
            assert result.added == {"maps": len(batch), "timeseries": len(batch)}
    # The first build: blocks from 0, 48 and 96 (4 steps), the first two joint on the 2
    # workers, the last shard by shard. The append from step 100: the block from 96 holds
    # published steps (shard by shard), those from 144 and 192 are joint.
    assert len(joint) == 4 and all(n > 0 for n in joint)
    source = decoded_source(*files)
    for layout in ("maps", "timeseries"):
        ours = open_cube(str(tmp_path / "joint" / "cube" / f"{layout}.zarr"))
        apart = open_cube(str(tmp_path / "apart" / "cube" / f"{layout}.zarr"))
        assert_same(ours, apart)
        values = ours["thetao"].values
        expected = source["thetao"].values
        assert np.array_equal(values, expected, equal_nan=True)
