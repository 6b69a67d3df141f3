"""``lake ls``: what a lake holds, read from its catalogue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lake.errors import TargetError
from lake.tables.manifest import stream_manifest

if TYPE_CHECKING:
    from lake.storage import Root


@dataclass
class DatasetListing:
    """One dataset of a lake, as `lake ls` shows it."""

    id: str
    kind: str
    items: int
    size: int
    bbox: list[float] | None
    interval: list[str | None]
    updated: str | None
    rows: int | None


def _mtime(root: Root, path: str) -> str | None:
    info = root.fs().info(root.path(path))
    value = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return None


def list_lake(root: Root) -> list[DatasetListing]:
    fs = root.fs()
    try:
        catalog = root.read_json("catalog.json")
    except FileNotFoundError:
        raise TargetError(
            f"{root.display}/catalog.json",
            "does not exist",
            "give the root of a lake built by `lake build`",
        ) from None
    entries = []
    for link in catalog.get("links", []):
        if link.get("rel") != "child":
            continue
        path = link["href"].removeprefix("./")
        collection = root.read_json(path)
        folder = path.rsplit("/", 1)[0]
        assets = collection.get("assets", {})
        items = sum(1 for x in collection.get("links", []) if x.get("rel") == "item")
        extent = collection.get("extent", {})
        bbox = (extent.get("spatial", {}).get("bbox") or [None])[0]
        interval = (extent.get("temporal", {}).get("interval") or [[None, None]])[0]
        if "manifest" in assets:
            manifest = stream_manifest(root, folder)
            if manifest is None:
                raise FileNotFoundError(root.path(folder, "table.json"))
            # Manifests record the total; earlier ones are summed file by file.
            size = manifest.bytes
            if size is None:
                size = sum(f.bytes for f in manifest.files())
            entries.append(DatasetListing(collection["id"], "table", items, size, bbox, interval,
                                 manifest.header.updated or None, manifest.rows))  # fmt: skip
            continue
        groups = [k for k, a in assets.items() if "zarr" in str(a.get("type", ""))]
        size = sum(int(fs.du(root.path(folder, f"{g}.zarr"), total=True)) for g in groups)
        stamps = [_mtime(root, f"{folder}/{g}.zarr/zarr.json") for g in groups]
        updated = max((m for m in stamps if m), default=None)
        entries.append(
            DatasetListing(collection["id"], "cube", items, size, bbox, interval, updated, None)
        )
    return entries
