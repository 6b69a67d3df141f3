"""Chunk and shard shapes for the two cube layouts (the ARCO scheme of Copernicus Marine).

* ``maps``: an inner chunk is one time step and one depth level over a spatial tile (several
  time steps when a map is tiny); a shard holds many time steps over the whole map. One
  day's map costs a few range requests.
* ``timeseries``: an inner chunk is a long run of time steps over a small spatial tile; a
  shard holds one such time block over a larger spatial tile. One point's full series costs
  one range request per time block. At a few locations (a mooring, a tide gauge) the
  time block grows to the reader's unit and a shard takes the depth levels too, so a
  decade of hourly data is one object per variable.

The maps inner tile *is* the time-series shard tile, so building the time-series layout
from the maps layout decompresses every maps chunk exactly once per time block, and a
worker's working set is one shard (``shard_mb``), whatever the size of the cube.

Each spatial dimension is split into a power-of-two number of near-equal chunks, so shards
are whole multiples of inner chunks and padding is at most a few elements per dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from lake.cubes.source import VariableSchema
    from lake.spec import Chunking, Layout

MB = 1024 * 1024
# 128 steps per time-series chunk: a daily append rewrites at most 127 earlier steps of the
# last block, and a 10-year daily point series is 29 range requests.
DEFAULT_TIMESERIES_TIME = 128
MAX_MAPS_TIME_PER_SHARD = 1024
# 2**19 steps: 60 years of hourly data; a longer series at a station takes several chunks.
MAX_TIMESERIES_TIME = 2**19
# A cube whose variables cover at most this many locations (the product of their extents
# other than time and depth) is a station series: by default only its time-series layout
# is built, since a map of a few points serves no reader.
STATION_LOCATIONS = 64


@dataclass(frozen=True)
class ChunkPlan:
    chunks: tuple[int, ...]
    shards: tuple[int, ...]

    @classmethod
    def of_array(cls, metadata: Mapping[str, Any]) -> ChunkPlan:
        """The plan a published array was written with (its Zarr v3 ``zarr.json``)."""
        outer = tuple(metadata["chunk_grid"]["configuration"]["chunk_shape"])
        first = (metadata.get("codecs") or [{}])[0]
        if first.get("name") == "sharding_indexed":
            return cls(tuple(first["configuration"]["chunk_shape"]), outer)
        return cls(outer, outer)


def default_layouts(variables: Mapping[str, VariableSchema]) -> list[Layout]:
    """The layouts a cube gets when its spec names none: a station series (at most
    :data:`STATION_LOCATIONS` locations) only ``timeseries``, any other cube both."""
    locations = max(
        (math.prod(n for d, n in zip(v.dims, v.shape, strict=True) if d not in ("time", "depth"))
         for v in variables.values()),
        default=1,
    )  # fmt: skip
    return ["timeseries"] if locations <= STATION_LOCATIONS else ["maps", "timeseries"]


def fit_tile(extent: Sequence[int], max_elems: float) -> list[int]:
    """Split each dimension into a power-of-two number of near-equal chunks until they fit.

    Chunks of ``ceil(extent / 2**k)`` cover the extent with at most ``2**k - 1`` elements of
    padding, where power-of-two chunk *sizes* could pad a 1440-wide grid to 2048 (and Zarr
    pays for every padded inner chunk).
    """
    counts = [1] * len(extent)
    tile = [max(n, 1) for n in extent]
    while math.prod(tile) > max_elems and max(tile) > 1:
        i = tile.index(max(tile))
        counts[i] *= 2
        tile[i] = math.ceil(extent[i] / counts[i])
    return tile


def grow_tile(tile: Sequence[int], extent: Sequence[int], max_elems: float) -> list[int]:
    """Double ``tile`` (keeping whole multiples of it) towards ``extent`` under ``max_elems``.

    With tiles from :func:`fit_tile`, the number of chunks along each dimension is a power
    of two, so doubled tiles divide it exactly: shards never hang past the last chunk.
    """
    out = list(tile)
    while True:
        open_dims = [i for i, (t, n) in enumerate(zip(out, extent, strict=True)) if t < n]
        if not open_dims:
            return out
        i = min(open_dims, key=lambda k: out[k] / extent[k])
        if math.prod(out) * 2 > max_elems:
            return out
        out[i] *= 2


def plan_chunks(
    dims: Sequence[str],
    shape: Sequence[int],
    itemsize: int,
    layout: Literal["maps", "timeseries"],
    chunking: Chunking,
) -> ChunkPlan:
    """Inner chunk and shard shapes for a variable with a ``time`` dimension."""
    inner_bytes = chunking.inner_chunk_mb * MB
    shard_bytes = chunking.shard_mb * MB
    t_block = chunking.timeseries_time or DEFAULT_TIMESERIES_TIME
    size = dict(zip(dims, shape, strict=True))
    space = [d for d in dims if d not in ("time", "depth")]
    extent = [max(size[d], 1) for d in space]

    ts_inner = fit_tile(extent, inner_bytes / (t_block * itemsize))
    few = ts_inner == extent  # the whole map fits one time-series chunk: a station, a few
    if few and chunking.timeseries_time is None:
        # A series at a few locations takes a longer run of time per chunk, up to the
        # reader's unit: a decade of hourly data at a mooring is one chunk, not 685.
        per_step = itemsize * math.prod(extent)
        while t_block < MAX_TIMESERIES_TIME and 2 * t_block * per_step <= inner_bytes:
            t_block *= 2
    ts_shard = grow_tile(ts_inner, extent, shard_bytes / (t_block * itemsize))
    # When one shard covers the whole map, it takes the depth levels too (as many as fit):
    # a station's variable is then one object, one depth's series one range request in it.
    ts_depth = 1
    if ts_shard == extent and "depth" in size:
        per_level = t_block * itemsize * math.prod(extent)
        ts_depth = max(1, min(size["depth"], int(shard_bytes // per_level)))
    if layout == "timeseries":
        chunk = {"time": t_block, "depth": 1, **dict(zip(space, ts_inner, strict=True))}
        shard = {"time": t_block, "depth": ts_depth, **dict(zip(space, ts_shard, strict=True))}
    else:
        maps_shard = grow_tile(ts_shard, extent, shard_bytes / itemsize)
        per_step = itemsize * math.prod(maps_shard)
        depth = max(size.get("depth", 1), 1)
        depth_shard = max(1, min(depth, int(shard_bytes // per_step)))
        # A map smaller than a quarter of the reader's unit (a station, a tiny grid) takes
        # several time steps per inner chunk, so objects stay few and reads efficient.
        step_bytes = itemsize * math.prod(ts_shard)
        time_inner = max(1, min(t_block, int(inner_bytes / 4 // step_bytes)))
        time_shard = chunking.maps_time_per_shard or max(
            1, min(MAX_MAPS_TIME_PER_SHARD, int(shard_bytes // (per_step * depth_shard)))
        )
        time_shard = max(time_inner, time_shard // time_inner * time_inner)
        chunk = {"time": time_inner, "depth": 1, **dict(zip(space, ts_shard, strict=True))}
        shard = {
            "time": time_shard,
            "depth": depth_shard,
            **dict(zip(space, maps_shard, strict=True)),
        }
    return ChunkPlan(tuple(chunk[d] for d in dims), tuple(shard[d] for d in dims))


def plan_static_chunks(
    dims: Sequence[str], shape: Sequence[int], itemsize: int, chunking: Chunking
) -> ChunkPlan:
    """Inner chunk and shard shapes for a variable without a time axis (a static layer).

    By the CF order of dimensions (T, Z, Y, X) the last two are the map: an inner chunk is
    one level of the leading dimensions (a month, a depth) over a tile of the map, a shard
    holds the whole map (as far as ``shard_mb`` allows) and as many levels as fit.
    """
    inner_bytes = chunking.inner_chunk_mb * MB
    shard_bytes = chunking.shard_mb * MB
    split = len(dims) - min(2, len(dims))
    levels, extent = list(shape[:split]), [max(n, 1) for n in shape[split:]]
    tile = fit_tile(extent, inner_bytes / itemsize)
    shard = grow_tile(tile, extent, shard_bytes / itemsize)
    level_chunks = [1] * len(levels)
    level_shards = [1] * len(levels)
    room = int(shard_bytes // (itemsize * math.prod(shard)))
    for i in reversed(range(len(levels))):
        take = max(1, min(max(levels[i], 1), room))
        level_shards[i] = take
        room = max(1, room // take)
    return ChunkPlan(tuple(level_chunks + tile), tuple(level_shards + shard))
