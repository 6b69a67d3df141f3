"""A cut table written to one file: GeoParquet 1.1, CSV (geometry as WKT) or GeoJSON
(RFC 7946: longitude/latitude), streamed batch by batch so that memory does not grow with
the rows. The file is written beside its final path and renamed into place when complete.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as pads

    from lake.read.table import TableSelection

Progress = Callable[[int, int], None]


def _batches(opened: pads.Dataset, selection: TableSelection, progress: Progress | None
             ) -> Iterator[pa.RecordBatch]:  # fmt: skip
    done, total = 0, max(selection.rows, 1)
    for batch in opened.to_batches():
        if batch.num_rows:
            done += batch.num_rows
            if progress is not None:
                progress(min(done, total), total)
            yield batch


def write_parquet(opened: pads.Dataset, selection: TableSelection, path: str,
                  progress: Progress | None) -> int:  # fmt: skip
    """GeoParquet 1.1 with the table's columns (partition keys included), its ``geo``
    metadata, and the bbox and geometry types of the rows written."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = opened.schema
    geo = json.loads((schema.metadata or {}).get(b"geo", b"{}"))
    column = geo.get("columns", {}).get(selection.geometry_column)
    rows, box = 0, [float("inf"), float("inf"), float("-inf"), float("-inf")]
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in _batches(opened, selection, progress):
            writer.write_batch(batch, row_group_size=100_000)
            rows += batch.num_rows
            if "bbox" in batch.schema.names:
                bbox = batch.column("bbox")
                for i, (key, pick) in enumerate((("xmin", pc.min), ("ymin", pc.min),
                                                 ("xmax", pc.max), ("ymax", pc.max))):  # fmt: skip
                    value = pick(pc.struct_field(bbox, key)).as_py()
                    if value is not None:
                        box[i] = min(box[i], value) if i < 2 else max(box[i], value)
        if column is not None:
            column["geometry_types"] = sorted({t for f in selection.files
                                               for t in f.geometry_types})  # fmt: skip
            column.pop("bbox", None)
            if box[0] <= box[2]:
                column["bbox"] = box
            writer.add_key_value_metadata({"geo": json.dumps(geo)})
    return rows


def _plain(batch: pa.RecordBatch, geometry: str, wkt: bool) -> pa.RecordBatch:
    """Columns a text format holds: no covering bbox, nested values as JSON text, the
    geometry as WKT (or left out)."""
    import pyarrow as pa
    import shapely

    arrays, names = [], []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if name == "bbox" or (name == geometry and not wkt):
            continue
        array = column
        if name == geometry:
            shapes = shapely.from_wkb(column.to_numpy(zero_copy_only=False))
            array = pa.array(shapely.to_wkt(shapes), type=pa.string())
        elif pa.types.is_nested(column.type):
            array = pa.array([None if v is None else json.dumps(v, default=str)
                              for v in column.to_pylist()], type=pa.string())  # fmt: skip
        elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            array = pa.array([None if v is None else v.hex() for v in column.to_pylist()])
        arrays.append(array)
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def write_csv(opened: pads.Dataset, selection: TableSelection, path: str,
              progress: Progress | None) -> int:  # fmt: skip
    import pyarrow.csv as pcsv

    rows = 0
    writer = None
    try:
        for batch in _batches(opened, selection, progress):
            plain = _plain(batch, selection.geometry_column, wkt=True)
            if writer is None:
                writer = pcsv.CSVWriter(path, plain.schema)
            writer.write_batch(plain)
            rows += plain.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        open(path, "w").close()
    return rows


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def write_geojson(opened: pads.Dataset, selection: TableSelection, path: str,
                  progress: Progress | None) -> int:  # fmt: skip
    """A FeatureCollection of the rows, geometries in longitude/latitude (RFC 7946: a table
    in another CRS is transformed), the other columns as properties."""
    import orjson
    import shapely

    transform = None
    if selection.srid:
        from pyproj import Transformer

        transformer = Transformer.from_crs(f"EPSG:{selection.srid}", "OGC:CRS84", always_xy=True)

        def transform(shapes: Any) -> Any:
            return shapely.transform(shapes, lambda xy: _xy(transformer, xy))

    rows = 0
    with open(path, "wb") as handle:
        handle.write(b'{"type":"FeatureCollection","features":[')
        for batch in _batches(opened, selection, progress):
            geoms = shapely.from_wkb(batch.column(selection.geometry_column)
                                     .to_numpy(zero_copy_only=False))  # fmt: skip
            if transform is not None:
                geoms = transform(geoms)
            texts = shapely.to_geojson(geoms)
            props = _plain(batch, selection.geometry_column, wkt=False).to_pylist()
            for text, prop in zip(texts, props, strict=True):
                handle.write(b"," if rows else b"")
                geometry = b"null" if text is None else text.encode()
                handle.write(b'{"type":"Feature","geometry":' + geometry + b',"properties":'
                             + orjson.dumps(prop, default=_json_default) + b"}")  # fmt: skip
                rows += 1
        handle.write(b"]}")
    return rows


def _xy(transformer: Any, xy: Any) -> Any:
    import numpy as np

    x, y = transformer.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])
