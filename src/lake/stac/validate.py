"""``lake validate``: every catalogue document against the STAC core and extension schemas,
and every GeoParquet file's ``geo`` metadata against the GeoParquet schema.

Schemas come from their URLs (cached under ``~/.cache/marine-lake/schemas``) or from a local
folder holding the schema files and an ``index.json`` that maps each URL to its file.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lake.errors import SpecError
from lake.report import Problem
from lake.tables.manifest import stream_manifest

if TYPE_CHECKING:
    from lake.storage import Root

CORE = {
    "Catalog": "https://schemas.stacspec.org/v1.1.0/catalog-spec/json-schema/catalog.json",
    "Collection": "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json",
    "Feature": "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json",
}
GEOPARQUET = "https://geoparquet.org/releases/v1.1.0/schema.json"


class Schemas:
    """JSON Schemas by URL, from a local folder or fetched once and cached."""

    def __init__(self, folder: Path | None = None) -> None:
        from referencing import Registry, Resource

        self.folder = folder
        self.index: dict[str, str] = {}
        if folder is not None:
            index = folder / "index.json"
            if not index.is_file():
                raise SpecError(
                    str(folder), "has no index.json mapping schema URLs to files",
                    "point --schemas at a folder with index.json, or leave it out to fetch",
                )  # fmt: skip
            self.index = json.loads(index.read_text())
        self.cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        self.cache = self.cache / "marine-lake" / "schemas"

        def retrieve(uri: str) -> Resource[Any]:
            return Resource.from_contents(self.load(uri))

        self.registry: Registry[Any] = Registry(retrieve=retrieve)  # type: ignore[call-arg]
        self.validators: dict[str, Any] = {}
        self.unchecked: set[str] = set()
        """Extension schemas a local folder lacks: their fields were not checked."""

    def load(self, url: str) -> Any:
        key = url.split("#", maxsplit=1)[0]
        if self.folder is not None:
            name = self.index.get(key)
            if name is None:
                raise LookupError(f"schema {key} is not in {self.folder}/index.json")
            return json.loads((self.folder / name).read_text())
        cached = self.cache / key.replace("://", "/").replace("/", "_")
        if cached.is_file():
            return json.loads(cached.read_text())
        with urllib.request.urlopen(key, timeout=30) as response:
            data = response.read()
        self.cache.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(data)
        return json.loads(data)

    def validator(self, url: str) -> Any:
        if url not in self.validators:
            import jsonschema

            schema = self.load(url)
            cls = jsonschema.validators.validator_for(schema)
            self.validators[url] = cls(schema, registry=self.registry)
        return self.validators[url]

    def check(self, doc: Any, url: str, where: str, extension: bool = False) -> list[Problem]:
        """Problems of ``doc`` against the schema at ``url``. An extension's schema that a
        local folder does not hold is noted in ``unchecked`` instead (a deprecated one,
        such as xarray-assets, may be left out of an offline copy)."""
        key = url.split("#", maxsplit=1)[0]
        if extension and self.folder is not None and key not in self.index:
            self.unchecked.add(url)
            return []
        try:
            validator = self.validator(url)
            errors = list(validator.iter_errors(doc))
        except Exception as exc:  # unreachable or unknown schema
            return [Problem(f"{where}: $", f"schema {url} could not be used ({exc})")]
        out = []
        for error in errors:
            detail = _deepest(error)
            out.append(Problem(f"{where}: {detail.json_path}", detail.message))
        return out


def _deepest(error: Any) -> Any:
    """The most specific cause of an error: among the branches of oneOf/anyOf, the one
    failing deepest in the document (the document type's branch, not the others)."""
    if not error.context:
        return error
    causes = [_deepest(e) for e in error.context]
    return max(causes, key=lambda e: len(list(e.absolute_path)))


def _documents(root: Root) -> Iterator[tuple[str, Any]]:
    """(path below the root, parsed document) of every document reachable from the root."""
    queue = ["catalog.json"]
    seen: set[str] = set()
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            doc = root.read_json(path)
        except FileNotFoundError:
            yield path, FileNotFoundError(path)
            continue
        except ValueError as exc:
            yield path, exc
            continue
        yield path, doc
        base = path.rsplit("/", 1)[0] if "/" in path else ""
        for link in doc.get("links", []) if isinstance(doc, dict) else []:
            if link.get("rel") in ("child", "item") and "://" not in link.get("href", ""):
                href = os.path.normpath("/".join(p for p in (base, link["href"]) if p))
                queue.append(href)


def validate_lake(root: Root, schemas: Schemas) -> tuple[int, list[Problem]]:
    """Validate every document and GeoParquet file; returns (documents checked, problems)."""
    import pyarrow.parquet as pq

    problems: list[Problem] = []
    count = 0
    fs = root.fs()
    for path, doc in _documents(root):
        count += 1
        if isinstance(doc, Exception):
            problems.append(Problem(f"{path}: $", f"cannot be read ({doc})"))
            continue
        kind = doc.get("type") if isinstance(doc, dict) else None
        if kind not in CORE:
            problems.append(Problem(f"{path}: $.type", f"unknown document type {kind!r}"))
            continue
        problems += schemas.check(doc, CORE[kind], path)
        for url in doc.get("stac_extensions", []):
            problems += schemas.check(doc, url, path, extension=True)
        if kind == "Collection" and "manifest" in doc.get("assets", {}):
            base = path.rsplit("/", 1)[0]
            manifest = stream_manifest(root, base)
            for info in manifest.files() if manifest else []:
                where = f"{base}/{info.path}"
                count += 1
                with fs.open(root.path(where), "rb") as handle:
                    meta = pq.read_metadata(handle).metadata or {}
                if b"geo" not in meta:
                    problems.append(Problem(f"{where}: $", "has no `geo` metadata"))
                    continue
                problems += schemas.check(json.loads(meta[b"geo"]), GEOPARQUET, where)
    return count, problems
