"""What was written, as STAC: one Collection per dataset and its Items.

Each dataset kind has its describer (:mod:`lake.stac.describe_cube`,
:mod:`lake.stac.describe_table`); this module holds what they share.

Everything here reads the lake (cube groups, table manifests and Parquet footers), never the
sources; the spec contributes only descriptive metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lake.errors import TargetError

if TYPE_CHECKING:
    from lake.spec import Dataset
    from lake.storage import Root

STAC_VERSION = "1.1.0"
EXT = {
    "datacube": "https://stac-extensions.github.io/datacube/v2.3.0/schema.json",
    "table": "https://stac-extensions.github.io/table/v1.2.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "scientific": "https://stac-extensions.github.io/scientific/v1.0.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "projection": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "zarr": "https://stac-extensions.github.io/zarr/v1.1.0/schema.json",
    "xarray": "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json",
}
MEDIA_ZARR = "application/vnd.zarr"
"""The Zarr media type as clients match it (xpystac, intake-stac); ``zarr:zarr_format``
gives the version."""
XARRAY_OPEN = {"engine": "zarr", "consolidated": True, "zarr_format": 3, "chunks": {}}
"""``xarray:open_kwargs`` of every Zarr asset: lazy, from the consolidated metadata."""
MEDIA_PARQUET = "application/vnd.apache.parquet"
SAMPLE_FILES = 32
"""A table's thumbnail reads the bbox columns of at most this many files (spread over all)."""


@dataclass
class Description:
    """A dataset's collection fields (without links) and a lazy stream of its items."""

    dataset: str
    kind: str
    extensions: list[str]
    bbox: list[float] | None
    interval: list[str | None]
    assets: dict[str, dict[str, Any]]
    fields: dict[str, Any] = field(default_factory=dict)
    summaries: dict[str, Any] = field(default_factory=dict)
    items: Any = None
    """A callable returning an iterator of item dicts (without links)."""
    thumbnail: Any = None
    """A callable returning a :class:`lake.stac.thumbnails.Picture`, or None."""
    version: str | None = None
    """The version of the table manifest described (None for cubes and older manifests)."""


def iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        return str(np.datetime_as_string(value, unit="s")) + "Z"
    if hasattr(value, "isoformat"):
        text = str(value.isoformat())
        if "T" not in text:
            text += "T00:00:00"
        text = text.replace("+00:00", "")
        return text if text.endswith("Z") else text + "Z"
    return str(value)


_REAL_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def real_dates(values: np.ndarray) -> np.ndarray:
    """Dates of any CF calendar as the nearest real dates (``datetime64[s]``, proleptic
    Gregorian), for the catalogue and pictures: a day the real calendar lacks (30 February
    in a ``360_day`` calendar, 29 February of a ``julian`` leap year that Gregorian skips)
    becomes the last day of its month. datetime64 values pass unchanged."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.datetime64):
        return values
    out = np.full(values.shape, np.datetime64("NaT"), dtype="datetime64[s]")
    for index, t in np.ndenumerate(values):
        if t is None or not hasattr(t, "year"):
            continue
        leap = t.year % 4 == 0 and (t.year % 100 != 0 or t.year % 400 == 0)
        days = 29 if (t.month == 2 and leap) else _REAL_MONTH_DAYS[t.month - 1]
        out[index] = np.datetime64(
            f"{t.year:04d}-{t.month:02d}-{min(t.day, days):02d}"
            f"T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        )
    return out


def geometry_of(bbox: list[float] | None) -> dict[str, Any] | None:
    if bbox is None:
        return None
    xmin, ymin, xmax, ymax = bbox
    if xmin == xmax and ymin == ymax:
        return {"type": "Point", "coordinates": [xmin, ymin]}
    return {
        "type": "Polygon",
        "coordinates": [[[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax], [xmin, ymin]]],
    }


def iso_text(value: str) -> str:
    if "T" not in value:
        value += "T00:00:00"
    return value if value.endswith("Z") or "+" in value[10:] else value + "Z"


def describe(root: Root, dataset: Dataset) -> Description:
    from lake.stac.describe_cube import describe_cube
    from lake.stac.describe_table import describe_table

    describers = {"cube": describe_cube, "table": describe_table}
    found = describers[dataset.kind](root, dataset)
    if found is None:
        raise TargetError(
            f"{root.display}/{dataset.id}",
            "holds nothing published to describe",
            "build the dataset first (`lake build SPEC --only ID`)",
        )
    return found
