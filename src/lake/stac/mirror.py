"""The stac-geoparquet mirror of a collection's items (``<dataset>/items.parquet``)."""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from collections.abc import Iterator

    from lake.storage import Root

MIRROR_CHUNK = 10_000


def write_mirror(root: Root, dataset: str, documents: Iterator[bytes], tmp: str) -> bool:
    """Write the stac-geoparquet mirror of the item ``documents`` (as written), converted
    chunk by chunk through a temporary folder (memory stays bounded); False when no item
    has a geometry (stac-geoparquet needs one: such items live in JSON only)."""
    from stac_geoparquet.arrow import parse_stac_items_to_arrow

    items = (orjson.loads(data) for data in documents)
    located = (item for item in items if item.get("geometry"))
    first = next(located, None)
    if first is None:
        return False
    chunks = f"{tmp}/mirror"
    os.makedirs(chunks)
    reader = parse_stac_items_to_arrow(
        itertools.chain([first], located), chunk_size=MIRROR_CHUNK, schema="ChunksToDisk",
        tmpdir=chunks,
    )  # fmt: skip
    _write_batches(root, dataset, reader)
    return True


def _write_batches(root: Root, dataset: str, reader: Any) -> None:
    """Write the mirror with stac-geoparquet's writer (GeoParquet `geo` metadata with the
    bbox covering, and its own `stac-geoparquet` metadata), whole or not at all."""
    from pyarrow.fs import FSSpecHandler, PyFileSystem
    from stac_geoparquet.arrow import to_parquet

    path = root.path(dataset, "items.parquet.partial" if root.local else "items.parquet")
    # A local file is renamed into place; an S3 object appears when its upload completes.
    to_parquet(reader, path, filesystem=PyFileSystem(FSSpecHandler(root.fs())),
               compression="zstd")  # fmt: skip
    if root.local:
        os.replace(path, root.path(dataset, "items.parquet"))
