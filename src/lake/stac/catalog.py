"""The static STAC catalogue of a lake, written from what the lake holds.

Layout::

    catalog.json
    <dataset>/collection.json
    <dataset>/items/<item>.json
    <dataset>/items.parquet          stac-geoparquet mirror of the items with a geometry
    <dataset>/thumbnail.png, overview.png   labelled preview; georeferenced over the bbox
    <dataset>/iso19139.xml, dcat.jsonld, datacite.json   metadata for portals (rel describedby)
    <dataset>/.stac-digests.jsonl    sha256 of each item document, to rewrite only changes
    .stac-documents.json             sha256 of catalog.json and each collection.json

A digest file maps a document to its sha256, or, while a build is rewriting it, to the
list of digests it may have (old and new); item digests are JSON Lines sorted by item id
(`lake.stac.digests`), so that they are compared with the new items as two sorted streams.

Links are relative; an absolute ``self`` link is added only when the spec gives
``public_url``. Items are written first (only those whose content changed), then the
mirror, then each collection, then ``catalog.json``: readers walking from the root never
meet a collection that lists an item not yet written. Nothing from ``storage_options`` or a
DSN can reach a document: documents are built from the lake and the spec's ``metadata``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lake.errors import TargetError
from lake.stac import digests
from lake.stac.collection import (
    ITEM_LINKS,
    collection_chunks,
    collection_document,
    dumps,
    item_with_links,
    public_url,
)
from lake.stac.describe import STAC_VERSION, describe
from lake.stac.fair import write_fair
from lake.stac.spool import NEW, REPLACED, UNCHANGED, Spool
from lake.stac.thumbnails import published_key

if TYPE_CHECKING:
    from lake.spec import Dataset, Spec
    from lake.stac.mirror import MirrorJob
    from lake.stac.thumbnails import Picture
    from lake.storage import Root
    from lake.tables.manifest import Manifest

ITEM_BATCH = 5_000


@dataclass
class CatalogueResult:
    collections: int = 0
    items: int = 0
    written: int = 0
    removed: int = 0
    documents: dict[str, str] = field(default_factory=dict)


def _read_json(root: Root, *parts: str) -> Any:
    try:
        return root.read_json(*parts)
    except FileNotFoundError:
        return None


def _accept_document(root: Root, path: str, digest: str, size: int) -> bool:
    """Record that ``path`` may now hold ``digest`` too, before it is overwritten; False
    (nothing recorded, nothing to write) when it already holds exactly that document."""
    recorded = digests.read_documents(root)
    if recorded.get(path) == digest and _size(root, path) == size:
        return False
    recorded[path] = digests.accepted(recorded.get(path), digest)
    digests.write_documents(root, recorded)
    return True


def _size(root: Root, path: str) -> int | None:
    try:
        return int(root.fs().size(root.path(path)))
    except FileNotFoundError:
        return None


def _compare(items: Iterator[dict[str, Any]], old: Iterator[digests.Entry], spool: Spool,
             spec: Spec, dataset: str) -> None:  # fmt: skip
    """Compare each item document with its recorded digest (both streams in id order)
    and spool what must be written, replaced or removed."""
    recorded = next(old, None)

    def remove_before(item_id: str | None) -> digests.Entry | None:
        """Spool as removed the recorded items before ``item_id`` (None: all the rest)."""
        nonlocal recorded
        while recorded is not None and (item_id is None or recorded.id < item_id):
            spool.removing.write(recorded._replace(removing=True).line())
            spool.removals += 1
            recorded = next(old, None)
        return recorded

    last = ""
    for item in items:
        data = dumps(item_with_links(item, spec, dataset))
        digest = hashlib.sha256(data).hexdigest()
        item_id = item["id"]
        spool.located += bool(item.get("geometry"))
        if item_id <= last:
            raise RuntimeError(f"items of {dataset} are not in id order at {item_id!r}")
        last = item_id
        match = remove_before(item_id)
        if match is not None and match.id == item_id:
            changed = match.digest != digest or match.removing
            if changed:
                accepted = digests.accepted(match.digest, digest)
                spool.replaced.write(digests.Entry(item_id, accepted).line())
                spool.replacements += 1
            spool.add(item_id, data, REPLACED if changed else UNCHANGED)
            recorded = next(old, None)
        else:  # not linked by any published collection yet
            spool.add(item_id, data, NEW)
        spool.new.write(digests.Entry(item_id, digest).line())
        spool.count += 1
    remove_before(None)


def _merge(*streams: Iterator[digests.Entry]) -> Iterator[digests.Entry]:
    """Entries of several id-ordered streams in id order; the first stream wins a tie."""
    import heapq

    last = None
    for entry in heapq.merge(*streams, key=lambda e: e.id):
        if entry.id != last:
            yield entry
        last = entry.id


def write_collection(root: Root, spec: Spec, dataset: Dataset, result: CatalogueResult) -> None:
    """Write one dataset's items (changed ones only), mirror, thumbnail and collection.

    Every document is written whole (rename or PUT), and its new digest is recorded as
    accepted *before* it is written: a build killed at any point leaves each document
    either as it was or as it should be, and ``lake verify`` accepts both. Items that no
    longer exist are deleted after the collection stops linking them.

    Items are generated, compared with the recorded digests and spooled to local
    temporary files in one pass (in id order, as are the digests); later steps stream
    from there. Memory stays flat whatever the number of items. Helper processes write
    the item documents and convert the mirror as they are compared (`lake.stac.spool`),
    then while this one draws the thumbnail and writes the portals' documents.
    """
    import tempfile

    d = describe(root, dataset)
    fs = root.fs()
    recorded: dict[str, Any] = {}
    mirror = root.path(dataset.id, "items.parquet")
    with tempfile.TemporaryDirectory(prefix="lake-stac-") as tmp:
        spool = Spool(tmp, root, dataset.id, mirror=not fs.exists(mirror))
        try:
            try:
                old = digests.read(root, dataset.id, recorded)
                _compare(d.items(), old, spool, spec, dataset.id)
            finally:
                spool.close()
            spool.compared()
            # Rewrite the record when it is in an earlier layout or describes another
            # manifest.
            stale = not recorded or recorded.get("manifest") != d.version
            result.items += spool.count
            if spool.replacements:
                # Published items are about to change: record both versions first.
                digests.write(root, dataset.id, _merge(spool.entries("replaced"),
                                                       digests.read(root, dataset.id)))  # fmt: skip
            if root.local:
                spool.send_replacements()
            else:  # concurrent PUTs
                _write_items(root, dataset.id, spool)
            has_mirror = spool.located > 0
            picture = d.thumbnail() if d.thumbnail else None
            has_overview = _write_pictures(root, dataset.id, picture)
            collection = collection_document(spec, dataset, d, picture is not None,
                                             has_mirror, has_overview)  # fmt: skip
            # The portals' documents first: the collection links them.
            result.documents.update(write_fair(root, spec, dataset, collection))
            spool.wait_items()
            result.written += spool.writes
            if spool.writes or spool.removals or stale:
                # Items to remove keep their digests until the collection no longer links
                # them. Every item document is now written from this manifest version.
                entries = _merge(spool.entries("new"), spool.entries("removing"))
                digests.write(root, dataset.id, entries, d.version)
            if spool.mirror is not None:
                _place_mirror(root, dataset.id, spool.mirror)
        finally:
            spool.stop()
        path = f"{dataset.id}/collection.json"
        digest = _write_collection_document(root, path, collection, spool.entries("new"), tmp)
        result.documents[path] = digest
        result.collections += 1
        if spool.removals:
            result.removed += _remove_items(root, dataset.id, spool.entries("removing"))
            digests.write(root, dataset.id, spool.entries("new"), d.version)
        if not has_mirror and fs.exists(mirror):  # no item left with a geometry
            fs.rm(mirror)


def _write_pictures(root: Root, dataset: str, picture: Picture | None) -> bool:
    """Write the thumbnail and the overview when they changed; whether there is an
    overview."""
    if picture is None:
        return False
    thumbnail = root.path(dataset, "thumbnail.png")
    if published_key(root, thumbnail) != picture.key:
        root.put(thumbnail, picture.draw())
    if picture.overview is None:
        return False
    overview = root.path(dataset, "overview.png")
    if published_key(root, overview) != picture.key:
        root.put(overview, picture.overview())
    return True


def _place_mirror(root: Root, dataset: str, job: MirrorJob) -> None:
    """Publish the mirror the helper converted (whole: a rename or one upload)."""
    try:
        local = job.wait()
    except RuntimeError as error:
        raise TargetError(
            f"{root.display}/{dataset}/items.parquet",
            f"could not be written ({error})",
            "check the free space of the temporary folder (TMPDIR)",
        ) from None
    if local is not None:
        root.put_file(local, root.path(dataset, "items.parquet"))


def _write_items(root: Root, dataset: str, spool: Spool) -> None:
    """Write the item documents to be written, in batches of concurrent requests."""
    batch: dict[str, bytes] = {}
    for mark, item_id, data in spool.read_documents():
        if mark != UNCHANGED:
            batch[root.path(dataset, "items", f"{item_id}.json")] = data
        if len(batch) >= ITEM_BATCH:
            root.put_many(batch)
            batch.clear()
    root.put_many(batch)


def _write_collection_document(root: Root, path: str, collection: dict[str, Any],
                               items: Iterator[digests.Entry], tmp: str) -> str:  # fmt: skip
    """Write the collection with one `item` link per line, streamed from the spool; its
    digest is recorded as accepted before it replaces the published one."""
    head, tail = dumps(collection, indent=1).split(dumps(ITEM_LINKS), 1)
    digest = hashlib.sha256()
    local = f"{tmp}/collection.json"
    with open(local, "wb") as out:
        for chunk in collection_chunks(head, tail, items):
            digest.update(chunk)
            out.write(chunk)
    if _accept_document(root, path, digest.hexdigest(), os.path.getsize(local)):
        root.put_file(local, root.path(path))
    return digest.hexdigest()


def _remove_items(root: Root, dataset: str, removing: Iterator[digests.Entry]) -> int:
    """Delete the documents of removed items (a killed run may have deleted some)."""
    fs = root.fs()
    removed = 0
    ids = (e.id for e in removing)
    while batch := list(itertools.islice(ids, ITEM_BATCH)):
        paths = [root.path(dataset, "items", f"{i}.json") for i in batch]
        present = [p for p in paths if fs.exists(p)]
        if present:
            fs.rm(present)
        removed += len(present)
    return removed


def catalogued_files(root: Root, dataset_id: str, manifest: Manifest | None) -> set[str]:
    """The files (relative to the dataset folder) that the published items of a dataset
    point at: a table build must not delete them before the catalogue is rewritten.

    ``manifest`` is the table's published manifest. When the item digests say that every
    item document was written from its version (and no rewrite or removal is under way),
    those files are the manifest's, found without a request per item. Otherwise (a build
    stopped between its manifest and its catalogue) every linked item is read.
    """
    if manifest is not None and manifest.version:
        recorded: dict[str, Any] = {}
        settled = all(isinstance(e.digest, str) and not e.removing
                      for e in digests.read(root, dataset_id, recorded))  # fmt: skip
        if settled and recorded.get("manifest") == manifest.version:
            return {info.path for info in manifest.files}
    collection = _read_json(root, dataset_id, "collection.json")
    files: set[str] = set()
    for link in (collection or {}).get("links", []):
        if link.get("rel") != "item":
            continue
        item = _read_json(root, dataset_id, link["href"].removeprefix("./"))
        for asset in (item or {}).get("assets", {}).values():
            href = str(asset.get("href", ""))
            if href.startswith("../"):
                files.add(href.removeprefix("../"))
    return files


def write_catalogue(root: Root, spec: Spec, only: list[str] | None = None) -> CatalogueResult:
    """(Re)write the catalogue; ``only`` limits which collections are refreshed."""
    result = CatalogueResult()
    fs = root.fs()
    # A second table is described in its dataset's collection, which it refreshes.
    refreshed = None if only is None else {d.part_of or d.id for d in spec.datasets
                                           if d.id in only}  # fmt: skip
    for dataset in spec.datasets:
        if dataset.part_of is not None:
            continue
        if refreshed is not None and dataset.id not in refreshed:
            continue
        write_collection(root, spec, dataset, result)
    links: list[dict[str, Any]] = [
        {"rel": "root", "href": "./catalog.json", "type": "application/json"}
    ]
    self_url = public_url(spec, "catalog.json")
    if self_url:
        links.append({"rel": "self", "href": self_url, "type": "application/json"})
    for dataset in spec.datasets:
        if dataset.part_of is None and fs.exists(root.path(dataset.id, "collection.json")):
            links.append({"rel": "child", "href": f"./{dataset.id}/collection.json",
                          "type": "application/json",
                          "title": dataset.metadata.title or dataset.id})  # fmt: skip
    catalog = {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": "lake",
        "title": spec.title,
        "description": spec.description or spec.title,
        "links": links,
    }
    data = dumps(catalog, indent=1)
    digest = hashlib.sha256(data).hexdigest()
    if _accept_document(root, "catalog.json", digest, len(data)):
        root.put(root.path("catalog.json"), data)
    # Digests of the catalogue's own documents, for `lake verify` (items have theirs in
    # each collection's digest file); now only the written versions are accepted.
    before = digests.read_documents(root)
    recorded = {**before, **result.documents, "catalog.json": digest}
    if recorded != before:  # a rerun with nothing new writes nothing
        digests.write_documents(root, recorded)
    return result
