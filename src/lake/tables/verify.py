"""Verify a published table: every file of the manifest against its size, sha256, rows and
``geo`` metadata, and the catalogue's items against the manifest.

A catalogue one version behind its table (a build stopped between the manifest and the
catalogue) is a note when every file it points at is intact; so are Parquet files below
``data/`` that no manifest lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lake.report import sha256_of
from lake.tables.manifest import MANIFEST

if TYPE_CHECKING:
    from lake.report import Report
    from lake.storage import Root


def verify_table(
    root: Root, folder: str, collection: dict[str, Any], report: Report, items: bool = True
) -> None:
    """``items=False``: a second table, described by its collection's asset alone."""
    import pyarrow.parquet as pq

    manifest = report.read_json(root, f"{folder}/{MANIFEST}")
    if manifest is None:
        return
    report.objects += 1
    files = {f["path"]: f for f in manifest.get("files", [])}
    for relative, info in files.items():
        path = f"{folder}/{relative}"
        report.objects += 1
        try:
            size, digest = sha256_of(root, path)
        except FileNotFoundError:
            report.add(path, "is listed in the manifest but missing")
            continue
        if size != info["bytes"]:
            report.add(path, f"has {size} bytes, the manifest says {info['bytes']}")
        if digest != info["sha256"]:
            report.add(path, "its sha256 differs from the manifest's (the file was altered)")
            continue
        with root.fs().open(root.path(path), "rb") as handle:
            meta = pq.read_metadata(handle)
        if meta.num_rows != info["rows"]:
            report.add(path, f"holds {meta.num_rows} rows, the manifest says {info['rows']}")
        if b"geo" not in (meta.metadata or {}):
            report.add(path, "has no GeoParquet `geo` metadata")
    catalogued: dict[str, tuple[str, dict[str, Any]]] = {}
    for link in collection.get("links", []):
        if link.get("rel") != "item":
            continue
        item_path = f"{folder}/{link['href'].removeprefix('./')}"
        item = report.read_json(root, item_path)
        if item is None:
            continue
        report.objects += 1
        for key, asset in item.get("assets", {}).items():
            catalogued[asset.get("href", "").removeprefix("../")] = (f"{item_path} asset {key}",
                                                                    asset)  # fmt: skip
    for relative, (where, asset) in catalogued.items():
        info = files.get(relative)
        if info is not None:
            if asset.get("file:size") != info["bytes"]:
                report.add(where, "file:size differs from the manifest")
            if asset.get("file:checksum") != "1220" + info["sha256"]:
                report.add(where, "file:checksum differs from the manifest")
            continue
        # Not in the manifest: the catalogue may describe the previous version (a build
        # stopped between the manifest and the catalogue); the file must then be intact.
        try:
            size, digest = sha256_of(root, f"{folder}/{relative}")
        except FileNotFoundError:
            report.add(where, f"points at {relative}, which is missing")
            continue
        if size != asset.get("file:size") or "1220" + digest != asset.get("file:checksum"):
            report.add(where, f"points at {relative}, whose size or sha256 differs")
    if not items:
        if collection.get("table:row_count") != manifest.get("rows"):
            report.add(folder, f"table:row_count {collection.get('table:row_count')} differs "
                       f"from the manifest's {manifest.get('rows')} rows")  # fmt: skip
    elif set(catalogued) != set(files):
        report.notes.append(f"{folder}: the catalogue describes an earlier version of the table "
                            "than its manifest (a build stopped between them); both are intact "
                            "and the next `lake build` rewrites the catalogue")  # fmt: skip
    elif collection.get("table:row_count") != manifest.get("rows"):
        report.add(f"{folder}/collection.json",
                   f"table:row_count {collection.get('table:row_count')} differs from the "
                   f"manifest's {manifest.get('rows')} rows")  # fmt: skip
    fs = root.fs()
    data = root.path(folder, "data")
    if fs.exists(data):
        listed = {root.path(folder, p) for p in [*files, *catalogued]}
        for path in fs.find(data):
            if path.endswith(".parquet") and path not in listed:
                report.notes.append(f"{path}: not in the manifest (left by an interrupted "
                                    "build; the next build removes it)")  # fmt: skip
