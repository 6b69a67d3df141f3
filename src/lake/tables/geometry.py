"""Geometries of rows: WKB points from lon/lat, PostGIS (E)WKB as ISO WKB, the ``bbox``
covering column, geometry type codes, the CRS as PROJJSON and GeoParquet 1.1 ``geo`` metadata."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from lake.errors import SourceError, SpecError

if TYPE_CHECKING:
    from lake.tables.job import TableJob


GEOPARQUET_VERSION = "1.1.0"
BBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")
WORLD = (-180.0, -90.0, 180.0, 90.0)
_GEOMETRY_NAMES = {
    0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint",
    5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection",
}  # fmt: skip
GTYPE = "_lake_gtype"
"""Helper column: each row's geometry type code (dropped before the final file)."""


def point_wkb(x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> pa.Array:
    """ISO WKB points, built as one buffer (21 bytes a point), null where not ``valid``."""
    n = len(x)
    record = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])
    data = np.zeros(n, dtype=record)
    data["order"] = 1
    data["type"] = 1
    data["x"] = x
    data["y"] = y
    kept = data[valid]
    lengths = np.where(valid, record.itemsize, 0).astype(np.int32)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    mask = pa.array(valid).buffers()[1] if not valid.all() else None
    return pa.Array.from_buffers(
        pa.binary(), n, [mask, pa.py_buffer(offsets), pa.py_buffer(kept.tobytes())],
        null_count=int(n - valid.sum()),
    )  # fmt: skip


def _bbox(xmin: np.ndarray, ymin: np.ndarray, xmax: np.ndarray, ymax: np.ndarray,
          valid: np.ndarray) -> pa.StructArray:  # fmt: skip
    fields = [pa.array(a, pa.float64(), mask=~valid) for a in (xmin, ymin, xmax, ymax)]
    return pa.StructArray.from_arrays(fields, names=list(BBOX_FIELDS), mask=pa.array(~valid))


@dataclass
class Geometries:
    wkb: pa.Array
    bbox: pa.StructArray
    valid: np.ndarray
    gtype: np.ndarray
    cx: np.ndarray
    cy: np.ndarray


def build_geometry(table: pa.Table, job: TableJob) -> Geometries:
    if job.lon is not None and job.lat is not None:
        x = _floats(table.column(job.lon), job.lon, job.label)
        y = _floats(table.column(job.lat), job.lat, job.label)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(x) & np.isfinite(y) & (np.abs(x) <= 180) & (np.abs(y) <= 90)
        x = np.where(valid, x, 0.0)
        y = np.where(valid, y, 0.0)
        return Geometries(
            point_wkb(x, y, valid), _bbox(x, y, x, y, valid), valid,
            np.where(valid, 0, -1).astype(np.int16), x, y,
        )  # fmt: skip
    import shapely

    assert job.source_geometry is not None
    raw = table.column(job.source_geometry).combine_chunks()
    geoms = shapely.from_wkb(np.asarray(raw.to_numpy(zero_copy_only=False), dtype=object))
    if job.srid is not None:
        srids = shapely.get_srid(geoms)
        present = ~shapely.is_missing(geoms)
        other = present & (srids != job.srid) & (srids != 0)
        if other.any():
            found = sorted({int(s) for s in srids[other]})
            raise SourceError(
                f"{job.label}: column {job.source_geometry!r}",
                f"mixes SRIDs ({job.srid} and {', '.join(map(str, found))})",
                "transform the column to one SRID in a query (ST_Transform)",
            )
    valid = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    has_z = shapely.has_z(geoms)
    wkb = shapely.to_wkb(geoms, flavor="iso", include_srid=False, output_dimension=3)
    bounds = shapely.bounds(geoms)
    bounds = np.where(valid[:, None], bounds, 0.0)
    gtype = np.where(valid, shapely.get_type_id(geoms) + 1000 * has_z, -1).astype(np.int16)
    return Geometries(
        pa.array(wkb, pa.binary(), mask=~valid),
        _bbox(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3], valid),
        valid, gtype, (bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2,
    )  # fmt: skip


def _floats(column: pa.ChunkedArray, name: str, label: str) -> np.ndarray:
    typ = column.type
    if isinstance(typ, pa.BaseExtensionType):
        column = pa.chunked_array([c.storage for c in column.chunks], typ.storage_type)
        typ = typ.storage_type
    if pa.types.is_decimal(typ) or pa.types.is_string(typ):
        try:
            column = column.cast(pa.float64())
        except pa.ArrowInvalid:
            raise SourceError(
                f"{label}: coordinate column {name!r}",
                "holds values that are not numbers",
                f"cast it in a query, e.g. `{name}::double precision`",
            ) from None
    elif not (pa.types.is_floating(typ) or pa.types.is_integer(typ)):
        raise SpecError(
            f"{label}: coordinate column {name!r}",
            f"is of type {typ}, not a number",
            "name numeric longitude and latitude columns in `geometry`",
        )
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def geometry_type_names(codes: Iterable[int]) -> list[str]:
    names = set()
    for code in codes:
        if code < 0:
            continue
        base = _GEOMETRY_NAMES.get(code % 1000, "Geometry")
        names.add(base + (" Z" if code >= 1000 else ""))
    return sorted(names)


def old_geometry_codes(table: pa.Table, job: TableJob) -> np.ndarray:
    if job.lon is not None:
        return np.where(table.column("bbox").is_valid().to_numpy(zero_copy_only=False), 0, -1)
    import shapely

    geoms = shapely.from_wkb(np.asarray(table.column(job.geometry_column).to_pylist(), object))
    valid = ~shapely.is_missing(geoms)
    return np.where(valid, shapely.get_type_id(geoms) + 1000 * shapely.has_z(geoms), -1).astype(
        np.int16
    )


def geo_metadata(job: TableJob, types: list[str], extent: list[float] | None) -> dict[str, Any]:
    """GeoParquet 1.1 ``geo`` metadata of one file."""
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": types,
        "crs": job.crs,
        "covering": {"bbox": {f: ["bbox", f] for f in BBOX_FIELDS}},
    }
    if extent is not None:
        column["bbox"] = extent
    if job.geography:
        column["edges"] = "spherical"
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": job.geometry_column,
        "columns": {job.geometry_column: column},
    }


def crs_projjson(srid: int | None) -> dict[str, Any]:
    """PROJJSON of the SRID; lon/lat columns and SRID 4326 are OGC:CRS84 (x = longitude)."""
    from pyproj import CRS

    if srid is None or srid == 4326:
        return dict(CRS.from_user_input("OGC:CRS84").to_json_dict())
    return dict(CRS.from_epsg(srid).to_json_dict())


def crs_bounds(srid: int | None) -> tuple[float, float, float, float]:
    """The CRS's area of use in its own coordinates: the square the Hilbert curve covers."""
    if srid is None or srid in (4326, 4258, 4269):
        return WORLD
    from pyproj import CRS, Transformer

    crs = CRS.from_epsg(srid)
    area = crs.area_of_use
    if crs.is_geographic or area is None:
        return WORLD
    transformer = Transformer.from_crs("OGC:CRS84", crs, always_xy=True)
    xmin, ymin, xmax, ymax = transformer.transform_bounds(*area.bounds)
    return (float(xmin), float(ymin), float(xmax), float(ymax))
