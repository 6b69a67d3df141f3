"""The static STAC catalogue of a lake, written from what the lake holds.

Layout::

    catalog.json
    <dataset>/collection.json
    <dataset>/items/<item>.json
    <dataset>/items.parquet          stac-geoparquet mirror of the items with a geometry
    <dataset>/thumbnail.png
    <dataset>/.stac-digests.json     sha256 of each item document, to rewrite only changes
    .stac-documents.json             sha256 of catalog.json and each collection.json

A digest file maps a document to its sha256, or, while a build is rewriting it, to the
list of digests it may have (old and new).

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from lake.stac.describe import EXT, MEDIA_PARQUET, STAC_VERSION, Description, describe

if TYPE_CHECKING:
    from lake.spec import Dataset, Spec
    from lake.storage import Root

DIGESTS = ".stac-digests.json"
DIGESTS_FORMAT = "lake-stac-digests/2"
ITEM_BATCH = 5_000
DOCUMENT_DIGESTS = ".stac-documents.json"
MIRROR_CHUNK = 10_000


@dataclass
class CatalogueResult:
    collections: int = 0
    items: int = 0
    written: int = 0
    removed: int = 0
    documents: dict[str, str] = field(default_factory=dict)


def _dumps(doc: dict[str, Any], indent: int | None = None) -> bytes:
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


def _collection(spec: Spec, dataset: Dataset, d: Description, item_ids: list[str],
                has_thumbnail: bool, has_mirror: bool) -> dict[str, Any]:  # fmt: skip
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
    links += [{"rel": "item", "href": f"./items/{i}.json", "type": "application/geo+json"}
              for i in item_ids]  # fmt: skip
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


Digest = str | list[str]  # one digest, or every digest a document may have mid-write


def read_digests(root: Root, dataset_id: str) -> tuple[dict[str, Digest], list[str]]:
    """A collection's recorded item digests and the item ids still to be removed."""
    doc = _read_json(root, dataset_id, DIGESTS) or {}
    if doc.get("format") != DIGESTS_FORMAT:  # the first layout: a flat id -> digest map
        return dict(doc), []
    return dict(doc["items"]), list(doc.get("removing", []))


def _put_digests(root: Root, dataset_id: str, items: dict[str, Digest],
                 removing: list[str]) -> None:  # fmt: skip
    doc = {"format": DIGESTS_FORMAT, "items": items, "removing": removing}
    root.put(root.path(dataset_id, DIGESTS), _dumps(doc))


def _accepted(old: Digest | None, new: str) -> list[str]:
    before = [] if old is None else [old] if isinstance(old, str) else list(old)
    return [*dict.fromkeys([*before, new])]


def _accept_document(root: Root, path: str, digest: str) -> None:
    """Record that ``path`` may now hold ``digest`` too, before it is overwritten."""
    digests: dict[str, Digest] = _read_json(root, DOCUMENT_DIGESTS) or {}
    digests[path] = _accepted(digests.get(path), digest)
    root.put(root.path(DOCUMENT_DIGESTS), _dumps(digests, indent=1))


def write_collection(root: Root, spec: Spec, dataset: Dataset, result: CatalogueResult) -> None:
    """Write one dataset's items (changed ones only), mirror, thumbnail and collection.

    Every document is written whole (rename or PUT), and its new digest is recorded as
    accepted *before* it is written: a build killed at any point leaves each document
    either as it was or as it should be, and ``lake verify`` accepts both. Items that no
    longer exist are deleted after the collection stops linking them.
    """
    d = describe(root, dataset)
    fs = root.fs()
    old, removing = read_digests(root, dataset.id)
    accepted: dict[str, Digest] = dict(old)
    new: dict[str, str] = {}
    ids: list[str] = []
    batch: list[tuple[str, bytes]] = []

    def flush() -> None:
        if batch:
            # New items are not linked until the collection is written: only documents
            # that readers may already reach need their new digest recorded first.
            if any(item_id in old for item_id, _ in batch):
                _put_digests(root, dataset.id, accepted, removing)
            root.put_many({root.path(dataset.id, "items", f"{i}.json"): data for i, data in batch})
            result.written += len(batch)
            batch.clear()

    def documents() -> Iterator[dict[str, Any]]:
        for item in d.items():
            full = _with_links(item, spec, dataset.id)
            data = _dumps(full)
            digest = hashlib.sha256(data).hexdigest()
            ids.append(item["id"])
            new[item["id"]] = digest
            if old.get(item["id"]) != digest:
                accepted[item["id"]] = _accepted(old.get(item["id"]), digest)
                batch.append((item["id"], data))
                if len(batch) >= ITEM_BATCH:
                    flush()
            yield full
        flush()

    # stac-geoparquet needs a geometry: items without one live in JSON only.
    generated = documents()
    mirror = _write_mirror(root, dataset.id, (i for i in generated if i.get("geometry")))
    for _ in generated:  # the mirror stops early only when no item has a geometry
        pass
    result.items += len(ids)
    png = d.thumbnail() if d.thumbnail else None
    if png:
        root.put(root.path(dataset.id, "thumbnail.png"), png)
    removing = sorted({*removing, *(i for i in old if i not in new)} - set(new))
    # Items to remove keep their digests until the new collection no longer links them.
    _put_digests(root, dataset.id, {**{i: old[i] for i in removing if i in old}, **new},
                 removing)  # fmt: skip
    collection = _collection(spec, dataset, d, ids, png is not None, mirror)
    data = _dumps(collection, indent=1)
    path = f"{dataset.id}/collection.json"
    digest = hashlib.sha256(data).hexdigest()
    _accept_document(root, path, digest)
    root.put(root.path(path), data)
    result.documents[path] = digest
    result.collections += 1
    if removing:
        paths = [root.path(dataset.id, "items", f"{i}.json") for i in removing]
        present = [p for p in paths if fs.exists(p)]  # a killed run may have removed some
        if present:
            fs.rm(present)
        result.removed += len(present)
        _put_digests(root, dataset.id, dict(new), [])


def _write_mirror(root: Root, dataset: str, items: Iterator[dict[str, Any]]) -> bool:
    """Stream the items into ``items.parquet`` (stac-geoparquet), chunk by chunk."""
    import tempfile

    from stac_geoparquet.arrow import parse_stac_items_to_arrow

    first = next(items, None)
    if first is None:  # no item with a geometry: no mirror (stac-geoparquet needs one)
        return False
    with tempfile.TemporaryDirectory(prefix="lake-stac-") as tmp:
        # Chunks go to disk while the schema is inferred: memory stays bounded.
        reader = parse_stac_items_to_arrow(
            itertools.chain([first], items), chunk_size=MIRROR_CHUNK, schema="ChunksToDisk",
            tmpdir=tmp,
        )  # fmt: skip
        return _write_batches(root, dataset, reader)


def _write_batches(root: Root, dataset: str, reader: Any) -> bool:
    """Write the mirror with stac-geoparquet's writer (GeoParquet `geo` metadata with the
    bbox covering, and its own `stac-geoparquet` metadata), whole or not at all."""
    from pyarrow.fs import FSSpecHandler, PyFileSystem
    from stac_geoparquet.arrow import to_parquet

    path = root.path(dataset, "items.parquet.partial" if root.local else "items.parquet")
    # A local file is renamed into place; an S3 object appears when its upload completes.
    to_parquet(reader, path, filesystem=PyFileSystem(FSSpecHandler(root.fs())),
               compression="zstd")  # fmt: skip
    if root.local:
        import os

        os.replace(path, root.path(dataset, "items.parquet"))
    return True


def catalogued_files(root: Root, dataset_id: str) -> set[str]:
    """The files (relative to the dataset folder) that the published items of a dataset
    point at: a table build must not delete them before the catalogue is rewritten."""
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
    _accept_document(root, "catalog.json", digest)
    root.put(root.path("catalog.json"), data)
    # Digests of the catalogue's own documents, for `lake verify` (items have theirs in
    # each collection's digest file); now only the written versions are accepted.
    digests: dict[str, Digest] = _read_json(root, DOCUMENT_DIGESTS) or {}
    digests.update(result.documents)
    digests["catalog.json"] = digest
    root.put(root.path(DOCUMENT_DIGESTS), _dumps(digests, indent=1))
    return result
