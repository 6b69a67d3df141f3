"""The static STAC catalogue of a lake, written from what the lake holds.

Layout::

    catalog.json
    <dataset>/collection.json
    <dataset>/items/<item>.json
    <dataset>/items.parquet          stac-geoparquet mirror of the items with a geometry
    <dataset>/thumbnail.png
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
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import orjson

from lake.stac import digests
from lake.stac.describe import EXT, MEDIA_PARQUET, STAC_VERSION, Description, describe
from lake.stac.thumbnails import published_key

if TYPE_CHECKING:
    from lake.spec import Dataset, Spec
    from lake.storage import Root
    from lake.tables.manifest import Manifest

ITEM_BATCH = 5_000
MIRROR_CHUNK = 10_000


@dataclass
class CatalogueResult:
    collections: int = 0
    items: int = 0
    written: int = 0
    removed: int = 0
    documents: dict[str, str] = field(default_factory=dict)


def _dumps(doc: Any, indent: int | None = None) -> bytes:
    """Compact JSON by orjson (10x faster than the standard library: items are many), or
    indented by the standard library (documents people read: catalogue, collections)."""
    if indent is None:
        return orjson.dumps(doc)
    return json.dumps(doc, indent=indent, ensure_ascii=False).encode()


def _software() -> dict[str, str]:
    out = {}
    for name in ("marine-lake", "zarr", "xarray", "pyarrow", "dask"):
        try:
            out[name] = version(name)
        except Exception:
            continue
    return out


def _public(spec: Spec, *parts: str) -> str | None:
    if not spec.public_url:
        return None
    return "/".join([spec.public_url.rstrip("/"), *parts])


def _collection(spec: Spec, dataset: Dataset, d: Description, has_thumbnail: bool,
                has_mirror: bool) -> dict[str, Any]:  # fmt: skip
    """The collection document, with `_ITEM_LINKS` standing last in its links for the
    item links (streamed in by `_write_collection_document`)."""
    meta = dataset.metadata
    extensions = [*d.extensions, EXT["processing"]]
    links: list[dict[str, Any]] = [
        {"rel": "root", "href": "../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
    ]
    self_url = _public(spec, dataset.id, "collection.json")
    if self_url:
        links.append({"rel": "self", "href": self_url, "type": "application/json"})
    license_url = meta.license_url or (
        f"https://spdx.org/licenses/{meta.license}.html"
        if meta.license and meta.license != "other" and " " not in meta.license
        else None
    )
    if license_url:
        links.append({"rel": "license", "href": license_url, "title": meta.license})
    fields: dict[str, Any] = {}
    if meta.doi:
        extensions.append(EXT["scientific"])
        fields["sci:doi"] = meta.doi
        links.append({"rel": "cite-as", "href": f"https://doi.org/{meta.doi}"})
    if meta.citation:
        if EXT["scientific"] not in extensions:
            extensions.append(EXT["scientific"])
        fields["sci:citation"] = meta.citation
    links.append(_ITEM_LINKS)  # type: ignore[arg-type]
    providers = [p.model_dump(exclude_none=True) for p in meta.providers]
    source = "NetCDF files" if d.kind == "cube" else "PostgreSQL"
    written = "a Zarr v3 cube" if d.kind == "cube" else "hive-partitioned GeoParquet 1.1"
    # The processing extension puts lineage on the processor's provider entry.
    providers.append({
        "name": "marine-lake", "roles": ["processor"],
        "url": "https://pypi.org/project/marine-lake/",
        "processing:lineage": f"Converted from {source} to {written} by marine-lake.",
        "processing:software": _software(),
    })  # fmt: skip
    assets = dict(d.assets)
    if has_mirror:
        assets["items"] = {
            "href": "./items.parquet", "type": MEDIA_PARQUET, "roles": ["collection-mirror"],
            "title": "The items of this collection as stac-geoparquet",
        }  # fmt: skip
    if has_thumbnail:
        assets["thumbnail"] = {"href": "./thumbnail.png", "type": "image/png",
                               "roles": ["thumbnail"], "title": "Preview"}  # fmt: skip
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": sorted(set(extensions)),
        "id": dataset.id,
        "title": meta.title or dataset.id,
        "description": meta.description or meta.title or f"{d.kind} dataset {dataset.id}",
        "keywords": meta.keywords,
        "license": meta.license or "other",
        "providers": providers,
        "extent": {
            "spatial": {"bbox": [d.bbox or [-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [d.interval]},
        },
        "summaries": d.summaries,
        "assets": assets,
        "links": links,
        **d.fields,
        **fields,
    }


def _with_links(item: dict[str, Any], spec: Spec, dataset: str) -> dict[str, Any]:
    links = [
        {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "../collection.json", "type": "application/json"},
        {"rel": "collection", "href": "../collection.json", "type": "application/json"},
    ]
    self_url = _public(spec, dataset, "items", f"{item['id']}.json")
    if self_url:
        links.append({"rel": "self", "href": self_url, "type": "application/geo+json"})
    return {**item, "links": links}


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


class _Spool:
    """Local temporary files that carry a collection's state between passes, so that
    memory does not grow with the number of items."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.new = open(f"{folder}/new.jsonl", "wb")  # noqa: SIM115 - closed in close()
        """(id, digest) of every item of this version, in id order."""
        self.replaced = open(f"{folder}/replaced.jsonl", "wb")  # noqa: SIM115
        """(id, accepted digests) of published items about to be rewritten."""
        self.removing = open(f"{folder}/removing.jsonl", "wb")  # noqa: SIM115
        """(id, old digest) of published items this version no longer has."""
        self.documents = open(f"{folder}/documents", "wb")  # noqa: SIM115
        """Every item document: a line ``+ id`` (to write) or ``= id`` (unchanged), then
        the document's line."""
        self.count = 0
        self.writes = 0
        self.replacements = 0
        self.removals = 0

    def add(self, item_id: str, data: bytes, write: bool) -> None:
        self.documents.write(b"%s %s\n%s\n" % (b"+" if write else b"=", item_id.encode(), data))
        self.writes += write

    def close(self) -> None:
        for handle in (self.new, self.replaced, self.removing, self.documents):
            handle.close()

    def entries(self, name: str) -> Iterator[digests.Entry]:
        return digests.spool_lines(f"{self.folder}/{name}.jsonl")

    def read_documents(self) -> Iterator[tuple[str, bytes, bool]]:
        """(id, document, whether it is to be written), in id order."""
        with open(f"{self.folder}/documents", "rb") as handle:
            while line := handle.readline():
                yield line[2:-1].decode(), handle.readline()[:-1], line[:1] == b"+"


def _compare(items: Iterator[dict[str, Any]], old: Iterator[digests.Entry], spool: _Spool,
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
        data = _dumps(_with_links(item, spec, dataset))
        digest = hashlib.sha256(data).hexdigest()
        item_id = item["id"]
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
            spool.add(item_id, data, changed)
            recorded = next(old, None)
        else:  # not linked by any published collection yet
            spool.add(item_id, data, True)
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
    from there. Memory stays flat whatever the number of items.
    """
    import tempfile

    d = describe(root, dataset)
    fs = root.fs()
    recorded: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lake-stac-") as tmp:
        spool = _Spool(tmp)
        try:
            old = digests.read(root, dataset.id, recorded)
            _compare(d.items(), old, spool, spec, dataset.id)
        finally:
            spool.close()
        # Rewrite the record when it is in an earlier layout or describes another manifest.
        stale = not recorded or recorded.get("manifest") != d.version
        result.items += spool.count
        if spool.replacements:
            # Published items are about to change: record both versions first.
            digests.write(root, dataset.id, _merge(spool.entries("replaced"),
                                                   digests.read(root, dataset.id)))  # fmt: skip
        batch: dict[str, bytes] = {}
        for item_id, data, write in spool.read_documents():
            if write:
                batch[root.path(dataset.id, "items", f"{item_id}.json")] = data
            if len(batch) >= ITEM_BATCH:
                root.put_many(batch)
                batch.clear()
        root.put_many(batch)
        result.written += spool.writes
        mirror = root.path(dataset.id, "items.parquet")
        if spool.writes or spool.removals or not fs.exists(mirror):
            has_mirror = _write_mirror(root, dataset.id, spool, tmp)
        else:  # the same items as the published mirror holds
            has_mirror = True
        picture = d.thumbnail() if d.thumbnail else None
        thumbnail = root.path(dataset.id, "thumbnail.png")
        if picture is not None and published_key(root, thumbnail) != picture.key:
            root.put(thumbnail, picture.draw())
        if spool.writes or spool.removals or stale:
            # Items to remove keep their digests until the collection no longer links them.
            # Every item document is now written from this manifest version.
            entries = _merge(spool.entries("new"), spool.entries("removing"))
            digests.write(root, dataset.id, entries, d.version)
        path = f"{dataset.id}/collection.json"
        collection = _collection(spec, dataset, d, picture is not None, has_mirror)
        digest = _write_collection_document(root, path, collection, spool.entries("new"), tmp)
        result.documents[path] = digest
        result.collections += 1
        if spool.removals:
            result.removed += _remove_items(root, dataset.id, spool.entries("removing"))
            digests.write(root, dataset.id, spool.entries("new"), d.version)
        if not has_mirror and fs.exists(mirror):  # no item left with a geometry
            fs.rm(mirror)


def _write_collection_document(root: Root, path: str, collection: dict[str, Any],
                               items: Iterator[digests.Entry], tmp: str) -> str:  # fmt: skip
    """Write the collection with one `item` link per line, streamed from the spool; its
    digest is recorded as accepted before it replaces the published one."""
    head, tail = _dumps(collection, indent=1).split(_dumps(_ITEM_LINKS), 1)
    digest = hashlib.sha256()
    local = f"{tmp}/collection.json"
    with open(local, "wb") as out:
        for chunk in _collection_chunks(head, tail, items):
            digest.update(chunk)
            out.write(chunk)
    if _accept_document(root, path, digest.hexdigest(), os.path.getsize(local)):
        root.put_file(local, root.path(path))
    return digest.hexdigest()


_ITEM_LINKS = f"\u0000item links {uuid.uuid4().hex}\u0000"
"""Stands in the collection's links for the item links, which are streamed in its place
(random, so that no text of the spec or the source can be mistaken for it)."""


def _collection_chunks(head: bytes, tail: bytes, items: Iterator[digests.Entry]
                       ) -> Iterator[bytes]:  # fmt: skip
    first = next(items, None)
    if first is None:  # no item: drop the comma before the placeholder
        yield head.rstrip(b" \n").removesuffix(b",")
    else:
        yield head.rstrip(b" ")
        for entry in itertools.chain([first], items):
            link = {"rel": "item", "href": f"./items/{entry.id}.json",
                    "type": "application/geo+json"}  # fmt: skip
            yield (b"  " if entry is first else b",\n  ") + _dumps(link)
    yield tail


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


def _write_mirror(root: Root, dataset: str, spool: _Spool, tmp: str) -> bool:
    """Write the stac-geoparquet mirror of the spooled items, converted chunk by chunk
    through a temporary folder (memory stays bounded); False when no item has a geometry
    (stac-geoparquet needs one: such items live in JSON only)."""
    from stac_geoparquet.arrow import parse_stac_items_to_arrow

    items = (orjson.loads(data) for _, data, _ in spool.read_documents())
    located = (item for item in items if item.get("geometry"))
    first = next(located, None)
    if first is None:
        return False
    chunks = f"{tmp}/mirror"
    os.makedirs(chunks)
    reader = parse_stac_items_to_arrow(
        itertools.chain([first], located), chunk_size=MIRROR_CHUNK, schema="ChunksToDisk",
        tmpdir=chunks,
    )  # fmt: skip
    _write_batches(root, dataset, reader)
    return True


def _write_batches(root: Root, dataset: str, reader: Any) -> None:
    """Write the mirror with stac-geoparquet's writer (GeoParquet `geo` metadata with the
    bbox covering, and its own `stac-geoparquet` metadata), whole or not at all."""
    from pyarrow.fs import FSSpecHandler, PyFileSystem
    from stac_geoparquet.arrow import to_parquet

    path = root.path(dataset, "items.parquet.partial" if root.local else "items.parquet")
    # A local file is renamed into place; an S3 object appears when its upload completes.
    to_parquet(reader, path, filesystem=PyFileSystem(FSSpecHandler(root.fs())),
               compression="zstd")  # fmt: skip
    if root.local:
        os.replace(path, root.path(dataset, "items.parquet"))


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
    for dataset in spec.datasets:
        if only is not None and dataset.id not in only:
            continue
        write_collection(root, spec, dataset, result)
    links: list[dict[str, Any]] = [
        {"rel": "root", "href": "./catalog.json", "type": "application/json"}
    ]
    self_url = _public(spec, "catalog.json")
    if self_url:
        links.append({"rel": "self", "href": self_url, "type": "application/json"})
    for dataset in spec.datasets:
        if fs.exists(root.path(dataset.id, "collection.json")):
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
    data = _dumps(catalog, indent=1)
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
