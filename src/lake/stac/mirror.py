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
    """The records of a catalogue's spool file: (mark, id, document),
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

    seen = _Geometries()
    chunks = f"{tmp}/mirror"
    os.makedirs(chunks)
    files: list[str] = []
    schema: pa.Schema | None = None
    raw: pa.Schema | None = None
    with _collection_paused():
        while docs := list(itertools.islice(documents, chunk)):
            batch = None if raw is None else documents_to_arrow(docs, raw, seen)
            if batch is None:  # the first chunk, or one with fields or types not seen yet
                raw = _json_schema(docs)
                items = [seen.add(item) for item in map(orjson.loads, docs)
                         if item.get("geometry")]  # fmt: skip
                batch = items_to_arrow(items) if items else None
                del items
            del docs
            if batch is None or not batch.num_rows:
                continue
            if schema is None:
                schema = batch.schema
            elif not schema.equals(batch.schema):
                schema = pa.unify_schemas([schema, batch.schema], promote_options="permissive")
            files.append(f"{chunks}/{len(files)}.arrow")
            # Arrow IPC: read back as it was written, with no Parquet encoding twice.
            with pa.ipc.new_file(files[-1], batch.schema, options=_ipc_options()) as writer:
                writer.write_batch(batch)
    if schema is None:
        return False
    reader = pa.RecordBatchReader.from_batches(
        schema, pads.dataset(files, schema=schema, format="ipc").to_batches(
            batch_size=chunk)
    )  # fmt: skip
    _write_batches(out, reader, seen)
    return True


def _ipc_options() -> Any:
    import pyarrow as pa

    return pa.ipc.IpcWriteOptions(compression="lz4")


def _json_schema(docs: list[bytes]) -> Any:
    """The schema of the documents as Arrow's JSON reader reads them, with text it read
    as timestamps kept as text (stac-geoparquet converts the ones STAC defines); None when
    the reader cannot read them as one table (geometries of several depths, say)."""
    import pyarrow as pa
    import pyarrow.json as pajson

    try:
        inferred = pajson.read_json(_lines(docs), read_options=_read_options(docs)).schema
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None

    def text(kind: pa.DataType) -> pa.DataType:
        if pa.types.is_timestamp(kind):
            return pa.string()
        if pa.types.is_struct(kind):
            return pa.struct([f.with_type(text(f.type)) for f in kind])
        if pa.types.is_list(kind):
            return pa.list_(kind.value_field.with_type(text(kind.value_type)))
        return kind

    return pa.schema([f.with_type(text(f.type)) for f in inferred])


def _lines(docs: list[bytes]) -> Any:
    import pyarrow as pa

    return pa.BufferReader(b"\n".join(docs) + b"\n")


def _read_options(docs: list[bytes]) -> Any:
    import pyarrow.json as pajson

    # A block must hold the longest document.
    return pajson.ReadOptions(block_size=max(1 << 20, 2 * max(map(len, docs))))


GEOJSON_DEPTH = {"Point": 1, "LineString": 2, "MultiPoint": 2, "Polygon": 3,
                 "MultiLineString": 3, "MultiPolygon": 4}  # fmt: skip
"""How deep GeoJSON nests each geometry type's coordinates (shapely's type names are
these in capitals)."""


def documents_to_arrow(docs: list[bytes], raw: Any, seen: _Geometries) -> Any:
    """The item documents with a geometry as :func:`items_to_arrow` converts them, read by
    Arrow's JSON reader with the schema ``raw`` (of an earlier chunk) instead of parsed
    into Python objects (7x faster); None when a document has a field or a type that
    ``raw`` lacks, or the geometries are not all of one type."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pajson
    from stac_geoparquet.arrow._batch import StacJsonBatch

    if "geometry" not in raw.names or not pa.types.is_struct(raw.field("geometry").type):
        return None
    options = pajson.ParseOptions(explicit_schema=raw, unexpected_field_behavior="error")
    try:
        table = pajson.read_json(_lines(docs), read_options=_read_options(docs),
                                 parse_options=options)  # fmt: skip
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    table = table.filter(pc.is_valid(table["geometry"])).combine_chunks()
    if not table.num_rows or "proj:geometry" in str(table.schema):
        return None  # stac-geoparquet's own path for proj:geometry (see items_to_arrow)
    geometry = table["geometry"].chunks[0]
    kinds = pc.unique(geometry.field("type")).to_pylist()
    wkb = _wkb(geometry, kinds[0]) if len(kinds) == 1 else None
    if wkb is None:
        return None
    seen.types.add(kinds[0])
    seen.add_boxes(table["bbox"].chunks[0] if "bbox" in table.column_names else None)
    batch = table.set_column(table.column_names.index("geometry"), "geometry", wkb)
    return StacJsonBatch(batch.to_batches()[0]).to_arrow_batch().inner


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


def _wkb(geometry: Any, kind: str) -> Any:
    """ISO WKB of GeoJSON geometries of one ``kind``, as Arrow reads them (a struct of
    type and nested coordinate lists), built from the lists' offsets in one vectorised
    call; None when they are not of a kind this handles."""
    import numpy as np
    import pyarrow as pa
    import shapely

    depth = GEOJSON_DEPTH.get(kind)
    if depth is None:  # a GeometryCollection
        return None
    coordinates = geometry.field("coordinates")
    offsets = []
    for _ in range(depth):
        if not pa.types.is_list(coordinates.type):
            return None
        offsets.append(coordinates.offsets.to_numpy() - coordinates.offsets[0].as_py())
        coordinates = coordinates.flatten()
    numbers = pa.types.is_floating(coordinates.type) or pa.types.is_integer(coordinates.type)
    sizes = np.diff(offsets[-1])
    if not numbers or not len(sizes) or sizes.min() != sizes.max() or sizes[0] not in (2, 3):
        return None
    coords = coordinates.to_numpy(zero_copy_only=False).astype(float).reshape(-1, sizes[0])
    # shapely takes the offsets innermost first, without the positions' own.
    shapes = shapely.from_ragged_array(shapely.GeometryType[kind.upper()], coords,
                                       tuple(reversed(offsets[:-1])) or None)  # fmt: skip
    return pa.array(shapely.to_wkb(shapes, flavor="iso"), pa.binary())


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

    def add_boxes(self, boxes: Any) -> None:
        """The bboxes of a chunk, as an Arrow list array (None: no item has one)."""
        import pyarrow.compute as pc

        if boxes is None:
            return
        boxes = boxes.filter(pc.equal(pc.list_value_length(boxes), 4))
        if not len(boxes):
            return
        low = [pc.min(pc.list_element(boxes, i)).as_py() for i in (0, 1)]
        high = [pc.max(pc.list_element(boxes, i)).as_py() for i in (2, 3)]
        box = [*low, *high]
        self.bbox = box if self.bbox is None else [
            min(self.bbox[0], box[0]), min(self.bbox[1], box[1]),
            max(self.bbox[2], box[2]), max(self.bbox[3], box[3]),
        ]  # fmt: skip


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
