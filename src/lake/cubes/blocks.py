"""Shard-aligned block writes of a cube layout, run on Dask workers.

:func:`write_block` writes one shard-aligned block of one variable straight into the target
through an :class:`ArrayRef` that carries the *new* metadata (rendered by
:mod:`lake.cubes.template`), so chunks beyond the published shape can be written before it
changes. The values come from a :class:`Feed`: the source files, or another layout.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import mmap
import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import zarr

from lake.errors import SourceError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from lake.cubes.index import SourceIndex
    from lake.cubes.source import CubeReader
    from lake.storage import Root


@dataclass(frozen=True)
class ArrayRef:
    """One array of a layout, opened with given metadata (possibly not yet published)."""

    root: Root
    group: str
    name: str
    metadata: dict[str, Any]

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(self.metadata["dimension_names"])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.metadata["shape"])

    def open(self) -> zarr.Array[Any]:
        from zarr.core.array import AsyncArray
        from zarr.core.array_spec import ArrayConfigParams
        from zarr.core.metadata import ArrayV3Metadata
        from zarr.storage import StorePath

        store = self.root.zarr_store(self.group)
        meta = ArrayV3Metadata.from_dict(dict(self.metadata))
        # Blocks are written whole: skip zarr's all-fill test of every inner chunk (a full
        # extra pass over the data, 7% of a build's time, measured); an all-fill inner
        # chunk compresses to a few bytes anyway.
        config: ArrayConfigParams = {"write_empty_chunks": True}
        return zarr.Array(AsyncArray(meta, StorePath(store, self.name), config=config))


def _selection(dims: Sequence[str], region: Mapping[str, slice]) -> tuple[slice, ...]:
    return tuple(region.get(d, slice(None)) for d in dims)


class Feed(Protocol):
    """Where new values of a block come from."""

    def read(self, name: str, region: Mapping[str, slice]) -> np.ndarray: ...


@dataclass(frozen=True)
class SourceFeed:
    """Reads the source files of a block through the dataset's source reader."""

    reader: CubeReader
    index: SourceIndex

    def read(self, name: str, region: Mapping[str, slice]) -> np.ndarray:
        return self.reader.read(self.index, name, region)


@dataclass(frozen=True)
class ZarrFeed:
    """Reads another layout (the maps layout feeds the time-series layout)."""

    arrays: dict[str, ArrayRef]

    def read(self, name: str, region: Mapping[str, slice]) -> np.ndarray:
        ref = self.arrays[name]
        return np.asarray(ref.open()[_selection(ref.dims, region)])


def fast_codecs(root: Root | None = None) -> dict[str, Any]:
    """Zarr configuration for the Rust codec pipeline of ``zarrs``, when it is installed.

    It encodes and decodes the same bytes as zarr-python's own pipeline with 40% less CPU
    (measured on a maps shard), which is most of a build's cost. Below a local ``root``
    whose file system takes direct I/O, shards are written and read past the page cache:
    copying 2.4 GB of shards into pages the kernel has just handed out cost a 1.9 GiB build
    5 s of CPU, a sixth of it (measured), and the build reads each shard back at most once.
    """
    try:
        import zarrs  # noqa: F401
    except ImportError:  # pragma: no cover - zarrs is a dependency; keep working without it
        return {}
    config: dict[str, Any] = {"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}
    if root is not None and root.local and direct_io(root.path()):
        config["codec_pipeline.direct_io"] = True
    return config


DIRECT_ALIGN = 4096


@functools.cache
def direct_io(directory: str) -> bool:
    """Whether files in ``directory`` can be written and read with ``O_DIRECT`` (most local
    file systems can; some network and FUSE mounts cannot). Checked once per process with
    a probe file, removed again."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag or not os.path.isdir(directory):
        return False
    block = mmap.mmap(-1, DIRECT_ALIGN)  # page-aligned, as O_DIRECT needs
    try:
        handle, probe = tempfile.mkstemp(prefix=".lake-direct-", dir=directory)
    except OSError:
        return False
    os.close(handle)
    try:
        fd = os.open(probe, os.O_RDWR | flag)
        try:
            written = os.writev(fd, [block])
            return written == DIRECT_ALIGN and os.preadv(fd, [block], 0) == DIRECT_ALIGN
        finally:
            os.close(fd)
    except OSError:
        return False
    finally:
        block.close()
        with contextlib.suppress(OSError):
            os.unlink(probe)


@dataclass(frozen=True)
class Written:
    """What one block task did: the shard it covers, its bytes, whether it was all fill."""

    group: str
    """The layout group (``<dataset>/maps.zarr``)."""
    array: str
    shard: str
    """The shard's key below the array (``c/0/3/1``)."""
    nbytes: int
    empty: bool
    """Every value is the array's fill value: no object was written (a reader gets the
    fill value for a missing shard, bit for bit), and the layout records the key."""


def shard_key(ref: ArrayRef, region: Mapping[str, slice]) -> str:
    """The key of the shard holding ``region`` (a shard-aligned block)."""
    grid = ref.metadata["chunk_grid"]["configuration"]["chunk_shape"]
    encoding = ref.metadata.get("chunk_key_encoding", {})
    separator = str(encoding.get("configuration", {}).get("separator", "/"))
    indices = [str(region[d].start // step if d in region else 0)
               for d, step in zip(ref.dims, grid, strict=True)]  # fmt: skip
    return "c" + separator + separator.join(indices)


def all_fill(values: np.ndarray, fill: Any) -> bool:
    """Whether every value is ``fill`` bit for bit (a JSON fill value such as "NaN").

    Compared slice by slice, stopping at the first slice with another value: a block of
    real data costs one small comparison, not a pass over the block (every block is
    tested as it is written).
    """
    if values.dtype.kind not in "iufb" or fill is None or values.size == 0:
        return False
    try:
        expected = np.asarray(float(fill) if isinstance(fill, str) else fill, dtype=values.dtype)
    except (TypeError, ValueError, OverflowError):
        return False
    width = values.dtype.itemsize
    if width in (1, 2, 4, 8):
        bits = np.dtype(f"u{width}")
        flat, expected = np.ravel(values).view(bits), expected.view(bits)
    else:
        flat = np.ravel(values)
    step = 1 << 16
    return all(bool(np.all(flat[i : i + step] == expected)) for i in range(0, flat.size, step))


Runs = tuple[tuple[int, int], ...]


def write_block(
    target: ArrayRef,
    region: Mapping[str, slice],
    feed: Feed,
    committed: ArrayRef | None = None,
    published_ntime: int = 0,
    replaced: Runs = (),
) -> Written:
    """Write one shard-aligned block; say which shard, its uncompressed bytes, and whether
    it was all fill (then nothing is written).

    Time steps before ``published_ntime`` come from the ``committed`` array (the last partial
    shard is rewritten whole, its published part unchanged), except those in the
    ``replaced`` runs; later ones and replaced ones from ``feed``.
    """
    rewrites_published = committed is not None and region["time"].start < published_ntime
    if rewrites_published and target.root.local:
        # zarrs writes local files in place (truncate, then write): a build killed mid-write
        # would tear a shard readers use. zarr-python writes a temporary file and renames
        # it, so the published shard is either the old one or the new one.
        return _write_block(target, region, feed, committed, published_ntime, replaced)
    with zarr.config.set(fast_codecs(target.root)):
        return _write_block(target, region, feed, committed, published_ntime, replaced)


def _segments(t: slice, published_ntime: int, replaced: Runs) -> list[tuple[slice, bool]]:
    """``t`` cut into runs of steps, each with whether it comes from the source (new or
    replaced) rather than from the published array."""
    cuts = {t.start, t.stop, published_ntime}
    for lo, hi in replaced:
        cuts.update((lo, hi))
    edges = sorted(c for c in cuts if t.start <= c <= t.stop)
    out: list[tuple[slice, bool]] = []
    for lo, hi in itertools.pairwise(edges):
        fresh = lo >= published_ntime or any(a <= lo and hi <= b for a, b in replaced)
        if out and out[-1][1] == fresh:
            out[-1] = (slice(out[-1][0].start, hi), fresh)
        else:
            out.append((slice(lo, hi), fresh))
    return out


def _write_block(
    target: ArrayRef,
    region: Mapping[str, slice],
    feed: Feed,
    committed: ArrayRef | None,
    published_ntime: int,
    replaced: Runs = (),
) -> Written:
    rewrites = False
    if "time" not in target.dims:  # a static layer: written whole, never appended to
        data = _stored(target, feed.read(target.name, region))
    else:
        t = region["time"]
        axis = target.dims.index("time")
        parts = []
        for steps, fresh in _segments(t, published_ntime if committed is not None else 0,
                                      replaced):  # fmt: skip
            part = {**region, "time": steps}
            if fresh:
                parts.append(_stored(target, feed.read(target.name, part)))
                rewrites = rewrites or steps.start < published_ntime
            else:
                assert committed is not None
                parts.append(np.asarray(committed.open()[_selection(committed.dims, part)]))
        data = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)
    key = shard_key(target, region)
    if not rewrites and all_fill(data, target.metadata.get("fill_value")):
        # Any earlier object of this shard stays: its published part is all fill too, and
        # the steps it lacks read as fill. (A shard with replaced steps is always written:
        # its old object may hold values the new version no longer has.)
        return Written(target.group, target.name, key, int(data.nbytes), empty=True)
    target.open()[_selection(target.dims, region)] = data
    return Written(target.group, target.name, key, int(data.nbytes), empty=False)


def _stored(target: ArrayRef, values: np.ndarray) -> np.ndarray:
    """Decoded dates (datetime64 or cftime objects) as the integers the array stores, in its
    own ``units`` and ``calendar``; other values as they are."""
    if values.dtype.kind not in "MO":
        return values
    from lake.cubes.timeaxis import encode_times

    attrs = target.metadata.get("attributes", {})
    units, calendar = str(attrs.get("units", "")), str(attrs.get("calendar", "standard"))
    ints = encode_times(values.ravel(), units, calendar) if " since " in units else None
    if ints is None:
        raise SourceError(
            f"variable {target.name}",
            f"holds dates that are not whole numbers of the cube's time units {units!r}",
            "delete the cube to rebuild it (its time units are chosen from all the sources)",
        )
    return ints.reshape(values.shape)


def block_regions(
    ref: ArrayRef, start_time: int, replaced: Runs = ()
) -> Iterator[dict[str, slice]]:
    """Shard-aligned regions of ``ref`` that hold time steps from ``start_time`` on, or
    steps of the ``replaced`` runs.

    The regular chunk grid of a sharded array is its shard grid, so each region is written
    whole by exactly one task: no two tasks ever touch the same object.
    """
    grid = ref.metadata["chunk_grid"]["configuration"]["chunk_shape"]
    ranges: list[list[slice]] = []
    for dim, size, step in zip(ref.dims, ref.shape, grid, strict=True):
        spans = [slice(lo, min(lo + step, size)) for lo in range(0, size, step)]
        if dim == "time":
            spans = [s for s in spans if s.stop > start_time
                     or any(lo < s.stop and s.start < hi for lo, hi in replaced)]  # fmt: skip
        ranges.append(spans)
    for combo in np.ndindex(*[len(r) for r in ranges]):
        yield {dim: ranges[i][k] for i, (dim, k) in enumerate(zip(ref.dims, combo, strict=True))}
