"""The documents of a collection and its items: fields, links, providers and lineage."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import orjson

from lake.registry import source_title
from lake.stac import digests
from lake.stac.describe import EXT, MEDIA_PARQUET, STAC_VERSION, Description
from lake.stac.fair import describedby_links

if TYPE_CHECKING:
    from lake.spec import Dataset, Spec


def dumps(doc: Any, indent: int | None = None) -> bytes:
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


def public_url(spec: Spec, *parts: str) -> str | None:
    if not spec.public_url:
        return None
    return "/".join([spec.public_url.rstrip("/"), *parts])


def collection_document(spec: Spec, dataset: Dataset, d: Description, has_thumbnail: bool,
                has_mirror: bool, has_overview: bool = False) -> dict[str, Any]:  # fmt: skip
    """The collection document, with `ITEM_LINKS` standing last in its links for the
    item links (streamed in by `_write_collection_document`)."""
    meta = dataset.metadata
    extensions = [*d.extensions, EXT["processing"]]
    links: list[dict[str, Any]] = [
        {"rel": "root", "href": "../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
    ]
    self_url = public_url(spec, dataset.id, "collection.json")
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
    links.extend(describedby_links())
    links.append(ITEM_LINKS)  # type: ignore[arg-type]
    providers = [p.model_dump(exclude_none=True) for p in meta.providers]
    source = source_title(dataset)
    written = "a Zarr v3 cube" if d.kind == "cube" else "hive-partitioned GeoParquet 1.1"
    # The processing extension puts lineage on the processor's provider entry.
    providers.append({
        "name": "marine-lake", "roles": ["processor"],
        "url": "https://pypi.org/project/marine-lake/",
        "processing:lineage": f"Converted from {source} to {written} by marine-lake.",
        "processing:software": _software(),
    })  # fmt: skip
    assets = {name: _absolute_zarr(spec, asset, dataset.id) for name, asset in d.assets.items()}
    if has_mirror:
        assets["items"] = {
            "href": "./items.parquet", "type": MEDIA_PARQUET, "roles": ["collection-mirror"],
            "title": "The items of this collection as stac-geoparquet",
        }  # fmt: skip
    if has_thumbnail:
        assets["thumbnail"] = {"href": "./thumbnail.png", "type": "image/png",
                               "roles": ["thumbnail"], "title": "Preview"}  # fmt: skip
    if has_overview:
        assets["overview"] = {
            "href": "./overview.png", "type": "image/png", "roles": ["overview"],
            "title": "Overview: its pixels span the collection's bbox, for map overlays",
        }  # fmt: skip
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


def _absolute_zarr(spec: Spec, asset: dict[str, Any], dataset: str) -> dict[str, Any]:
    """A Zarr asset with its href under ``public_url`` when the spec sets one: xpystac and
    intake open ``asset.href`` as it is, so a relative one fails outside the lake's folder.
    (Table files stay relative: the catalogue tells which files it points at by them.)"""
    if not spec.public_url or "zarr:zarr_format" not in asset:
        return asset
    name = str(asset["href"]).rsplit("/", 1)[-1]
    return {**asset, "href": public_url(spec, dataset, name)}


def item_with_links(item: dict[str, Any], spec: Spec, dataset: str) -> dict[str, Any]:
    links = [
        {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "../collection.json", "type": "application/json"},
        {"rel": "collection", "href": "../collection.json", "type": "application/json"},
    ]
    self_url = public_url(spec, dataset, "items", f"{item['id']}.json")
    if self_url:
        links.append({"rel": "self", "href": self_url, "type": "application/geo+json"})
        assets = {k: _absolute_zarr(spec, a, dataset) for k, a in item.get("assets", {}).items()}
        return {**item, "assets": assets, "links": links}
    return {**item, "links": links}


ITEM_LINKS = f"\u0000item links {uuid.uuid4().hex}\u0000"
"""Stands in the collection's links for the item links, which are streamed in its place
(random, so that no text of the spec or the source can be mistaken for it)."""


def collection_chunks(head: bytes, tail: bytes, items: Iterator[digests.Entry]
                       ) -> Iterator[bytes]:  # fmt: skip
    first = next(items, None)
    if first is None:  # no item: drop the comma before the placeholder
        yield head.rstrip(b" \n").removesuffix(b",")
    else:
        yield head.rstrip(b" ")
        for entry in itertools.chain([first], items):
            link = {"rel": "item", "href": f"./items/{entry.id}.json",
                    "type": "application/geo+json"}  # fmt: skip
            yield (b"  " if entry is first else b",\n  ") + dumps(link)
    yield tail
