"""A cube's collection and its one item, from its published layouts (never the sources)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from lake.cubes.chunking import ChunkPlan
from lake.cubes.coords import geographic
from lake.cubes.timeaxis import REAL_CALENDARS
from lake.spec import LAYOUTS
from lake.stac.describe import (
    EXT,
    MEDIA_ZARR,
    STAC_VERSION,
    XARRAY_OPEN,
    Description,
    geometry_of,
    iso,
    real_dates,
)
from lake.stac.extent import geographic_bbox

if TYPE_CHECKING:
    import xarray as xr

    from lake.spec import Dataset
    from lake.stac.thumbnails import Picture
    from lake.storage import Root


COLLECTION_ONLY = ("cube:variables", "xarray:open_kwargs")
"""Fields of a collection's Zarr asset that its item's asset leaves out."""


def _open_layout(root: Root, dataset: str, layout: str) -> xr.Dataset | None:
    import xarray as xr

    fs = root.fs()
    if not fs.exists(root.path(dataset, f"{layout}.zarr", "zarr.json")):
        return None
    with warnings.catch_warnings():
        # Consolidated metadata (UserWarning); dates of other calendars as cftime objects.
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=xr.SerializationWarning)
        opened: xr.Dataset = xr.open_zarr(
            root.zarr_store(dataset, f"{layout}.zarr", read_only=True),
            consolidated=True,
            zarr_format=3,
            chunks=None,
        )
    return opened


def _step(values: np.ndarray) -> float | None:
    if values.size < 2:
        return None
    diffs = np.diff(values.astype(np.float64))
    return float(diffs[0]) if np.allclose(diffs, diffs[0], rtol=1e-6) else None


def _time_step(values: np.ndarray) -> str | None:
    if values.size < 2 or not np.issubdtype(values.dtype, np.datetime64):
        return None
    seconds = np.diff(values.astype("datetime64[s]").astype(np.int64))
    if not np.all(seconds == seconds[0]) or seconds[0] <= 0:
        return None
    step = int(seconds[0])
    if step % 86400 == 0:
        return f"P{step // 86400}D"
    return f"PT{step}S"


def _dimensions(ds: xr.Dataset) -> dict[str, Any]:
    dims: dict[str, Any] = {}
    for name in ds.dims:
        values = np.asarray(ds[name].values) if name in ds.coords else np.arange(ds.sizes[name])
        entry: dict[str, Any]
        if name == "time":
            calendar = str(ds["time"].encoding.get("calendar", "standard")).lower()
            real = real_dates(values)
            entry = {"type": "temporal", "extent": [iso(real.min()), iso(real.max())]}
            step = _time_step(real)
            if step:
                entry["step"] = step
            if calendar not in REAL_CALENDARS:
                entry["calendar"] = calendar
                entry["description"] = (
                    f"time in the {calendar} calendar of the source; the extent gives the "
                    "nearest real dates"
                )
        elif (kind := geographic(ds[name].variable) if name in ds.coords else None) is not None:
            entry = {
                "type": "spatial",
                "axis": "y" if kind == "latitude" else "x",
                "extent": [float(values.min()), float(values.max())],
                "reference_system": 4326,
            }
            spacing = _step(values)
            if spacing is not None:
                entry["step"] = spacing
        elif name == "depth" and np.issubdtype(values.dtype, np.number):
            entry = {"type": "spatial", "axis": "z",
                     "extent": [float(values.min()), float(values.max())]}  # fmt: skip
            unit = ds[name].attrs.get("units")
            if unit:
                entry["unit"] = str(unit)
        else:
            entry = {"type": "other"}
            if values.size and np.issubdtype(values.dtype, np.number):
                entry["extent"] = [float(values.min()), float(values.max())]
        dims[str(name)] = entry
    return dims


def _stored(root: Root, dataset: str, layout: str) -> dict[str, dict[str, Any]]:
    """Each array's Zarr metadata (stored type, fill value, chunk grid, attributes), from
    the consolidated group document."""
    doc = root.read_json(dataset, f"{layout}.zarr", "zarr.json")
    return {name: meta for name, meta in doc.get("consolidated_metadata", {})
            .get("metadata", {}).items() if meta.get("node_type") == "array"}  # fmt: skip


_DATA_TYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
               "float16", "float32", "float64"}  # fmt: skip
"""Zarr data types that STAC's ``data_type`` names as they are (others are ``other``)."""


def _nodata(value: Any) -> float | str | None:
    """A fill value as STAC's ``nodata`` (a number, or ``nan``, ``inf``, ``-inf``)."""
    if isinstance(value, str) and value.lower() in ("nan", "infinity", "-infinity", "inf", "-inf"):
        return {"infinity": "inf", "-infinity": "-inf"}.get(value.lower(), value.lower())
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _as_stored(entry: dict[str, Any], meta: dict[str, Any]) -> None:
    """The variable as stored: its Zarr data type, and the CF packing and fill value that
    decode it (``scale``, ``offset``, ``nodata``), which tensorstore and GDAL readers see."""
    stored = meta.get("data_type")
    entry["data_type"] = stored if stored in _DATA_TYPES else "other"
    attrs = meta.get("attributes", {})
    for attr, key in (("scale_factor", "scale"), ("add_offset", "offset")):
        value = attrs.get(attr)
        if isinstance(value, int | float) and not isinstance(value, bool):
            entry[key] = value
    if "_FillValue" in attrs or "missing_value" in attrs:
        nodata = _nodata(meta.get("fill_value"))
        if nodata is not None:
            entry["nodata"] = nodata


def _variables(ds: xr.Dataset, stored: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, var in ds.data_vars.items():
        kind = "data" if "time" in var.dims or "time" not in ds.dims else "auxiliary"
        entry: dict[str, Any] = {
            "dimensions": [str(d) for d in var.dims],
            "variable_type": kind,
            "type": kind,  # the field's name before datacube v2.3
            "data_type": str(var.dtype) if str(var.dtype) in _DATA_TYPES else "other",
            "shape": [int(n) for n in var.shape],
        }
        meta = (stored or {}).get(str(name))
        if meta is not None:
            _as_stored(entry, meta)
            plan = ChunkPlan.of_array(meta)
            entry["chunks"], entry["shards"] = list(plan.chunks), list(plan.shards)
        for attr, key in (("units", "unit"), ("long_name", "description")):
            if attr in var.attrs:
                entry[key] = str(var.attrs[attr])
        out[str(name)] = entry
    return out


def _layer_date(root: Root, dataset_id: str, ds: xr.Dataset) -> str | None:
    """The date of a static layer: the source's ``date_modified``, ``date_issued`` or
    ``date_created`` (ACDD), else when the layer was built."""
    from lake.cubes.static import STATIC_LAYOUT, read_record

    for attr in ("date_modified", "date_issued", "date_created"):
        text = str(ds.attrs.get(attr, "")).strip().removesuffix("Z")
        if not text:
            continue
        try:
            return iso(np.datetime64(text, "s"))
        except ValueError:
            continue
    record = read_record(root, f"{dataset_id}/{STATIC_LAYOUT}.zarr")
    return record.built if record is not None else None


def describe_cube(root: Root, dataset: Dataset) -> Description | None:
    layouts = {name: _open_layout(root, dataset.id, name) for name in LAYOUTS}
    opened = {k: v for k, v in layouts.items() if v is not None}
    if not opened:
        return None
    first = next(iter(opened.values()))
    dims = _dimensions(first)
    bbox = geographic_bbox(first)
    interval = list(dims.get("time", {}).get("extent", [None, None]))
    assets: dict[str, dict[str, Any]] = {}
    for name, ds in opened.items():
        assets[name] = {
            "href": f"./{name}.zarr",
            "type": MEDIA_ZARR,
            "title": f"{name} layout: chunks " + (
                "span space, short in time" if name == "maps" else "span time, small in space"
            ),
            "roles": ["data"],
            "zarr:consolidated": True,
            "zarr:node_type": "group",
            "zarr:zarr_format": 3,
            "xarray:open_kwargs": dict(XARRAY_OPEN),
            "cube:variables": _variables(ds, _stored(root, dataset.id, name)),
        }  # fmt: skip
    variables = _variables(first, _stored(root, dataset.id, next(iter(opened))))
    for entry in variables.values():  # the collection's entries: no layout's chunk grid
        entry.pop("chunks", None)
        entry.pop("shards", None)
    fields: dict[str, Any] = {"cube:dimensions": dims, "cube:variables": variables}
    if bbox is None:
        # The extent below is then the whole world: say that it is not known, rather
        # than publish the cell indices or projection coordinates as degrees.
        fields["lake:spatial_extent"] = (
            "unknown: the sources give no latitude and longitude (CF units degrees_north "
            "and degrees_east, or standard names latitude and longitude)"
        )
    summaries = {"variables": sorted(variables)}
    dates: dict[str, Any] = {"datetime": None, "start_datetime": interval[0],
                             "end_datetime": interval[1]}  # fmt: skip
    if "time" not in first.dims:
        # A static layer: dated by its source (ACDD date attributes), else by its build.
        dates = {"datetime": _layer_date(root, dataset.id, first)}

    def items() -> Iterator[dict[str, Any]]:
        yield {
            "type": "Feature",
            "stac_version": STAC_VERSION,
            # Not xarray-assets: its v1.0.0 item schema requires a template's placeholder
            # field (`template:new_field`), so no item declaring it validates.
            "stac_extensions": [EXT["datacube"], EXT["zarr"]],
            "id": dataset.id,
            "geometry": geometry_of(bbox),
            **({"bbox": bbox} if bbox else {}),
            "properties": {
                **dates,
                "cube:dimensions": dims,
                "cube:variables": variables,
            },
            "assets": {
                name: {
                    **{k: v for k, v in asset.items() if k not in COLLECTION_ONLY},
                    "href": f"../{name}.zarr",
                }
                for name, asset in assets.items()
            },
            "collection": dataset.id,
        }

    def thumbnail() -> Picture | None:
        from lake.stac.thumbnails import cube_thumbnail

        return cube_thumbnail(opened.get("maps", first), bbox)

    return Description(
        dataset.id, "cube", [EXT["datacube"], EXT["zarr"], EXT["xarray"]], bbox, interval,
        assets,
        fields, summaries, items, thumbnail,
    )  # fmt: skip
