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

Where a time block of the whole map fits :data:`FUSED_SHARDS` shards (a regional grid),
the maps shards are cut to tile it (their time extent divides the time-series block, their
depth extent is cut to fit), and one task reads the block from the sources once and writes
both layouts from it: the maps copy is not read back.

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
        if chunking.maps_time_per_shard is None and maps_shard == extent:
            joint = joint_maps_shard(t_block, ts_depth, time_inner, per_step, depth, shard_bytes)
            if joint is not None:
                time_shard, depth_shard = joint
        chunk = {"time": time_inner, "depth": 1, **dict(zip(space, ts_shard, strict=True))}
        shard = {
            "time": time_shard,
            "depth": depth_shard,
            **dict(zip(space, maps_shard, strict=True)),
        }
    return ChunkPlan(tuple(chunk[d] for d in dims), tuple(shard[d] for d in dims))


FUSED_SHARDS = 4
"""A block that writes both layouts from one read holds up to this many ``shard_mb``."""


def joint_maps_shard(
    t_block: int, ts_depth: int, time_inner: int, per_step: int, depth: int, shard_bytes: float
) -> tuple[int, int] | None:
    """Maps shard ``(time, depth)`` extents that tile the time-series shards' time blocks
    and depth levels, so that one task can read a block of the sources once and write
    both layouts from it (see :func:`fused_block`); None if such a block would exceed
    :data:`FUSED_SHARDS` shards (a large map, or many depth levels per shard).

    ``per_step``: the bytes of one time step and depth level of the whole map. The time
    extent divides ``t_block`` or is a multiple of it (and of ``time_inner``, the maps
    inner chunk's); the depth extent is cut to fit.
    """
    budget = FUSED_SHARDS * shard_bytes
    for levels in range(max(1, min(depth, int(shard_bytes // per_step))), 0, -1):
        if levels % ts_depth and ts_depth % levels:
            continue
        most = max(1, min(MAX_MAPS_TIME_PER_SHARD, int(shard_bytes // (per_step * levels))))
        whole = math.lcm(t_block, time_inner)  # shards hold whole inner chunks
        if most >= whole:
            steps = most // whole * whole
        else:
            fits = [n for n in range(time_inner, most + 1, time_inner) if t_block % n == 0]
            if not fits:
                return None
            steps = fits[-1]
        if max(steps, t_block) * max(levels, ts_depth) * per_step <= budget:
            return steps, levels
    return None


def fused_block(
    dims: Sequence[str], maps: ChunkPlan, series: ChunkPlan, shape: Sequence[int]
) -> dict[str, int] | None:
    """The extents of a block that holds whole shards of both layouts of one variable
    (``maps`` and ``series``: their plans; ``shape``: the variable's), or None if they
    do not tile one another (the maps shard must cover the whole map, and along time and
    depth one layout's shard extent must divide the other's) or if the block would hold
    more than :data:`FUSED_SHARDS` of the larger shard."""
    if "time" not in dims:
        return None
    block: dict[str, int] = {}
    for dim, m, t, n in zip(dims, maps.shards, series.shards, shape, strict=True):
        if dim in ("time", "depth"):
            small, large = sorted((m, t))
            if large % small:
                return None
            block[dim] = large
        elif m < n:
            return None
        else:
            block[dim] = n
    largest = max(math.prod(maps.shards), math.prod(series.shards))
    return block if math.prod(block.values()) <= FUSED_SHARDS * largest else None


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
