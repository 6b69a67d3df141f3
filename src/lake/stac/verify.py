"""``lake verify``: walk the catalogue and re-read every asset against what was recorded.

* Tables: every file of the manifest exists with its recorded size and sha256, its Parquet
  footer opens with the recorded row count and `geo` metadata; every catalogue item's
  `file:size`/`file:checksum` agree with the manifest, and every file is in one item.
* The catalogue: `catalog.json`, every collection and every item is byte for byte what
  the writer recorded (sha256 in `.stac-documents.json` and `<dataset>/.stac-digests.jsonl`).
* Cubes: every array's own `zarr.json` equals its entry in the group's consolidated
  metadata (a flipped byte in either differs); shapes agree with the catalogue; every chunk
  of every array is read and decoded. Chunks carry a crc32c checksum (and shard indexes
  their own), so a flipped byte in a shard fails its decode instead of passing silently.

What a build killed with SIGKILL leaves is reported as notes, not problems, because no
reader sees it and the next build settles it: Parquet files below ``data/`` that no manifest
lists; a catalogue one version behind its table (each file it points at is then checked
against its item's own size and checksum) or its cube (fewer time steps); objects under a
cube array that are not shards of its published shape (an unpublished append, temporary
files); array documents ahead of the consolidated metadata that the publish journal names.
Catalogue documents may match any digest the writer recorded before rewriting them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake.cubes.verify import verify_layout
from lake.errors import LakeError
from lake.report import Report, sha256_of
from lake.stac import digests
from lake.tables.verify import verify_table

if TYPE_CHECKING:
    from lake.storage import Root

__all__ = ["Report", "verify_lake"]


def verify_lake(root: Root) -> Report:
    report = Report()
    catalog = report.read_json(root, "catalog.json")
    if catalog is None:
        return report
    report.objects += 1
    try:
        documents = digests.read_documents(root)
    except (LakeError, ValueError) as error:
        report.add(digests.DOCUMENTS, f"cannot be read ({error})")
        documents = {}
    _check_digest(root, "catalog.json", documents.get("catalog.json"), report)
    for link in catalog.get("links", []):
        if link.get("rel") != "child":
            continue
        path = link["href"].removeprefix("./")
        collection = report.read_json(root, path)
        if collection is None:
            continue
        report.objects += 1
        _check_digest(root, path, documents.get(path), report)
        folder = path.rsplit("/", 1)[0]
        try:
            items = digests.as_map(root, folder)
        except (LakeError, ValueError) as error:  # an unknown format, or not JSON
            report.add(f"{folder}/{digests.DIGESTS}", f"cannot be read ({error})")
            items = {}
        for item_link in collection.get("links", []):
            if item_link.get("rel") == "describedby" and "://" not in item_link["href"]:
                report.objects += 1
                described = f"{folder}/{item_link['href'].removeprefix('./')}"
                _check_digest(root, described, documents.get(described), report)
            if item_link.get("rel") == "item":
                href = item_link["href"]
                item_id = href.rsplit("/", 1)[-1].removesuffix(".json")
                _check_digest(root, f"{folder}/{href.removeprefix('./')}", items.get(item_id),
                              report)  # fmt: skip
        assets = collection.get("assets", {})
        if "manifest" in assets:
            verify_table(root, folder, collection, report)
        for name in assets:  # second tables: their files, not in items
            if name.endswith("-manifest") and name.removesuffix("-manifest") in assets:
                table = assets[name.removesuffix("-manifest")]
                verify_table(root, f"{folder}/{name.removesuffix('-manifest')}",
                             {"table:row_count": table.get("table:row_count")}, report,
                             items=False)  # fmt: skip
        for name, asset in assets.items():
            if "zarr" in str(asset.get("type", "")):
                verify_layout(root, folder, name, asset, report)
    return report


def _check_digest(root: Root, path: str, expected: str | list[str] | None, report: Report) -> None:
    """A catalogue document is byte for byte what the catalogue writer wrote (or, while a
    build rewrites it, one of the versions it recorded before writing)."""
    if expected is None:
        report.add(path, "has no recorded digest (the catalogue was not written by lake build)")
        return
    try:
        _, digest = sha256_of(root, path)
    except FileNotFoundError:
        report.add(path, "is missing")
        return
    if digest not in ([expected] if isinstance(expected, str) else expected):
        report.add(path, "differs from what the catalogue writer wrote (sha256 mismatch)")
