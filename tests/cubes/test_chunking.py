from __future__ import annotations

import math

import pytest

from lake.cubes.chunking import MB, plan_chunks
from lake.spec import Chunking

SHAPES = [
    (("time", "depth", "latitude", "longitude"), (365, 1, 1000, 1400), 4),
    (("time", "depth", "latitude", "longitude"), (9, 22, 120, 183), 4),
    (("time", "depth", "latitude", "longitude"), (3650, 50, 2160, 4320), 2),
    (("depth", "time"), (3, 20), 8),
    (("time",), (2069,), 1),
]


@pytest.mark.parametrize(("dims", "shape", "itemsize"), SHAPES)
@pytest.mark.parametrize("layout", ["maps", "timeseries"])
def test_shards_hold_whole_chunks_and_stay_bounded(
    dims: tuple[str, ...], shape: tuple[int, ...], itemsize: int, layout: str
) -> None:
    chunking = Chunking()
    plan = plan_chunks(dims, shape, itemsize, layout, chunking)  # type: ignore[arg-type]
    assert all(s % c == 0 for s, c in zip(plan.shards, plan.chunks, strict=True))
    assert math.prod(plan.chunks) * itemsize <= 4 * MB
    assert math.prod(plan.shards) * itemsize <= chunking.shard_mb * MB
    time_axis = dims.index("time")
    if layout == "maps":
        one_step = math.prod(plan.chunks) // plan.chunks[time_axis] * itemsize
        assert plan.chunks[time_axis] == 1 or one_step * 4 <= chunking.inner_chunk_mb * MB
    else:
        assert plan.chunks[time_axis] == plan.shards[time_axis] >= 64


def test_maps_tile_is_timeseries_shard_tile() -> None:
    dims, shape = ("time", "depth", "latitude", "longitude"), (365, 1, 1000, 1400)
    maps = plan_chunks(dims, shape, 4, "maps", Chunking())
    series = plan_chunks(dims, shape, 4, "timeseries", Chunking())
    assert maps.chunks[2:] == series.shards[2:]
    # The reader's unit stays in the 0.5-4 MB range for both layouts.
    for plan in (maps, series):
        assert 0.5 * MB <= math.prod(plan.chunks) * 4 <= 4 * MB
