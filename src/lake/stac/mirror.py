"""The stac-geoparquet mirror of a collection's items (``<dataset>/items.parquet``).

The catalogue converts it in a helper process (:class:`MirrorJob`) that reads the item
documents while its own process is still building and comparing them, then drawing the
thumbnail and writing the portals' documents: all of that is CPU, on two cores.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import sys
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

MIRROR_CHUNK = 10_000


def read_records(source: BinaryIO) -> Iterator[tuple[bytes, str, bytes]]:
    """The records of a catalogue's spool (or of a helper's pipe): (mark, id, document),
    from a line ``<mark> <id>`` followed by the document's (marks: :mod:`lake.stac.helper`)."""
    while line := source.readline():
        yield line[:1], line[2:-1].decode(), source.readline()[:-1]


def convert_mirror(documents: Iterator[bytes], tmp: str, out: str,
                   chunk: int = MIRROR_CHUNK) -> bool:  # fmt: skip
    """Write the stac-geoparquet mirror of the item ``documents`` (as written) to the local
    file ``out``, converted ``chunk`` items at a time through the folder ``tmp`` (memory
    stays bounded); False, and no file, when no item has a geometry (stac-geoparquet needs
    one: such items live in JSON only)."""
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    items = (orjson.loads(data) for data in documents)
    seen = _Geometries()
    located = (seen.add(item) for item in items if item.get("geometry"))
    chunks = f"{tmp}/mirror"
    os.makedirs(chunks)
    files: list[str] = []
    schema: pa.Schema | None = None
    with _collection_paused():
        while batch_items := list(itertools.islice(located, chunk)):
            batch = items_to_arrow(batch_items)
            del batch_items
            if schema is None:
                schema = batch.schema
            elif not schema.equals(batch.schema):
                schema = pa.unify_schemas([schema, batch.schema], promote_options="permissive")
            files.append(f"{chunks}/{len(files)}.parquet")
            pq.write_table(pa.Table.from_batches([batch]), files[-1])
    if schema is None:
        return False
    reader = pa.RecordBatchReader.from_batches(
        schema, pads.dataset(files, schema=schema, format="parquet").to_batches(
            batch_size=chunk)
    )  # fmt: skip
    _write_batches(out, reader, seen)
    return True


def main() -> None:
    """``python -c 'from lake.stac.mirror import main; main()' SPOOL TMP OUT CHUNK``: the
    mirror of every item document of a catalogue's spool, followed as it is written (see
    :mod:`lake.stac.helper`), as :func:`convert_mirror` writes it."""
    from lake.stac.helper import follow

    spool, tmp, out, chunk = sys.argv[1:5]
    records = follow(spool, sys.stdin.buffer, [])
    convert_mirror((data for _, _, data in records), tmp, out, int(chunk))


class MirrorJob:
    """The mirror of a catalogue's spool, converted by a helper process started at once
    (its chunks and its file go to the local folder ``tmp``)."""

    def __init__(self, spool: str, tmp: str) -> None:
        from lake.stac.helper import HelperProcess

        os.makedirs(tmp, exist_ok=True)
        self.out = f"{tmp}/items.parquet"
        self.helper = HelperProcess("from lake.stac.mirror import main; main()", spool,
                                    tmp, self.out, str(MIRROR_CHUNK))  # fmt: skip

    def wait(self) -> str | None:
        """The local mirror file (None: no item has a geometry); RuntimeError when the
        helper failed."""
        self.helper.wait()
        return self.out if os.path.exists(self.out) else None

    def stop(self) -> None:
        self.helper.stop()


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """Python's cycle collector off while chunks of parsed items are alive.

    A chunk holds 10,000 items of about 30 dicts and lists each; every collection of the
    oldest generation walks them all, which took as long as parsing the documents. JSON
    documents hold no reference cycles, so reference counting frees them without it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def items_to_arrow(items: list[dict[str, Any]]) -> Any:
    """Items as one stac-geoparquet record batch, equal to stac-geoparquet's
    ``stac_items_to_arrow`` (same schema, same values).

    stac-geoparquet deep-copies each item and builds a shapely geometry object per item
    before ``pa.array``, 80% of its time. These items are fresh dicts parsed from their
    documents, so they are converted in place, and their geometries are turned into WKB in
    one vectorised call; the rest is stac-geoparquet's own Arrow-level conversion
    (properties to top level, timestamps, bbox struct, GeoArrow metadata). Items with a
    ``proj:geometry`` go through stac-geoparquet whole.
    """
    import numpy as np
    import pyarrow as pa
    import shapely
    from stac_geoparquet.arrow._api import stac_items_to_arrow
    from stac_geoparquet.arrow._batch import StacJsonBatch

    if any(_has_proj_geometry(item) for item in items):
        return stac_items_to_arrow(items)
    shapes = shapely.from_geojson(
        np.array([orjson.dumps(item["geometry"]) for item in items], dtype=object)
    )
    for item, wkb in zip(items, shapely.to_wkb(shapes, flavor="iso"), strict=True):
        item["geometry"] = wkb
    batch = pa.RecordBatch.from_struct_array(pa.array(items))
    return StacJsonBatch(batch).to_arrow_batch().inner


def _has_proj_geometry(item: dict[str, Any]) -> bool:
    return "proj:geometry" in item.get("properties", {}) or any(
        "proj:geometry" in asset for asset in (item.get("assets") or {}).values()
    )


class _Geometries:
    """The geometry types and bbox of the items, gathered as they stream by."""

    def __init__(self) -> None:
        self.types: set[str] = set()
        self.bbox: list[float] | None = None

    def add(self, item: dict[str, Any]) -> dict[str, Any]:
        self.types.add(str(item["geometry"].get("type")))
        box = item.get("bbox")
        if box and len(box) == 4:
            self.bbox = list(box) if self.bbox is None else [
                min(self.bbox[0], box[0]), min(self.bbox[1], box[1]),
                max(self.bbox[2], box[2]), max(self.bbox[3], box[3]),
            ]  # fmt: skip
        return item


def _write_batches(out: str, reader: Any, seen: _Geometries) -> None:
    """Write the mirror to the local file ``out`` as stac-geoparquet does (its
    `stac-geoparquet` metadata, GeoParquet `geo` metadata with the bbox covering), with
    the `geo` metadata telling what the items hold: their geometry types, bbox, and the
    CRS of STAC geometries (OGC:CRS84, longitude first)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # stac-geoparquet's own metadata, as its `to_parquet` writes it (it offers no way to
    # give the geometry types, bbox and CRS, which it leaves empty or as EPSG:4326).
    from stac_geoparquet.arrow._constants import DEFAULT_PARQUET_SCHEMA_VERSION
    from stac_geoparquet.arrow._to_parquet import create_parquet_metadata

    from lake.tables.geometry import crs_projjson

    stream = pa.RecordBatchReader.from_stream(reader)
    # Parquet stores no struct without fields (`assets: {}`); stac-geoparquet restores them.
    empty = [f.name for f in stream.schema if pa.types.is_struct(f.type) and not f.type.num_fields]
    schema = pa.schema(f for f in stream.schema if f.name not in empty)
    meta = create_parquet_metadata(schema, schema_version=DEFAULT_PARQUET_SCHEMA_VERSION)
    geo = orjson.loads(meta[b"geo"])
    column = geo["columns"]["geometry"]
    column["geometry_types"] = sorted(seen.types)
    column["crs"] = crs_projjson(None)
    if seen.bbox is not None:
        column["bbox"] = seen.bbox
    meta[b"geo"] = orjson.dumps(geo)
    with pq.ParquetWriter(out, schema.with_metadata(meta), compression="zstd") as writer:
        for batch in stream:
            writer.write_batch(batch.drop_columns(empty))
