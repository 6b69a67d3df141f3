"""``lake verify``: re-read every asset of a lake and check it against what was recorded.

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

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lake import digests
from lake.errors import LakeError

if TYPE_CHECKING:
    from lake.storage import Root


@dataclass(frozen=True)
class Problem:
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


@dataclass
class Report:
    objects: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, subject: str, message: str) -> None:
        self.problems.append(Problem(subject, message))


def _json(root: Root, path: str, report: Report) -> Any:
    try:
        return root.read_json(path)
    except FileNotFoundError:
        report.add(path, "is missing")
    except ValueError as exc:
        report.add(path, f"is not valid JSON ({exc})")
    return None


def verify_lake(root: Root) -> Report:
    report = Report()
    catalog = _json(root, "catalog.json", report)
    if catalog is None:
        return report
    report.objects += 1
    documents = _json(root, ".stac-documents.json", report) or {}
    _check_digest(root, "catalog.json", documents.get("catalog.json"), report)
    for link in catalog.get("links", []):
        if link.get("rel") != "child":
            continue
        path = link["href"].removeprefix("./")
        collection = _json(root, path, report)
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
            if item_link.get("rel") == "item":
                href = item_link["href"]
                item_id = href.rsplit("/", 1)[-1].removesuffix(".json")
                _check_digest(root, f"{folder}/{href.removeprefix('./')}", items.get(item_id),
                              report)  # fmt: skip
        assets = collection.get("assets", {})
        if "manifest" in assets:
            _verify_table(root, folder, collection, report)
        for name, asset in assets.items():
            if "zarr" in str(asset.get("type", "")):
                _verify_group(root, folder, name, asset, report)
    return report


def _check_digest(root: Root, path: str, expected: str | list[str] | None, report: Report) -> None:
    """A catalogue document is byte for byte what the catalogue writer wrote (or, while a
    build rewrites it, one of the versions it recorded before writing)."""
    if expected is None:
        report.add(path, "has no recorded digest (the catalogue was not written by lake build)")
        return
    try:
        _, digest = _sha256(root, path)
    except FileNotFoundError:
        report.add(path, "is missing")
        return
    if digest not in ([expected] if isinstance(expected, str) else expected):
        report.add(path, "differs from what the catalogue writer wrote (sha256 mismatch)")


def _sha256(root: Root, path: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with root.fs().open(root.path(path), "rb") as handle:
        while chunk := handle.read(8 * 2**20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _verify_table(root: Root, folder: str, collection: dict[str, Any], report: Report) -> None:
    import pyarrow.parquet as pq

    manifest = _json(root, f"{folder}/table.json", report)
    if manifest is None:
        return
    report.objects += 1
    files = {f["path"]: f for f in manifest.get("files", [])}
    for relative, info in files.items():
        path = f"{folder}/{relative}"
        report.objects += 1
        try:
            size, digest = _sha256(root, path)
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
        item = _json(root, item_path, report)
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
            size, digest = _sha256(root, f"{folder}/{relative}")
        except FileNotFoundError:
            report.add(where, f"points at {relative}, which is missing")
            continue
        if size != asset.get("file:size") or "1220" + digest != asset.get("file:checksum"):
            report.add(where, f"points at {relative}, whose size or sha256 differs")
    if set(catalogued) != set(files):
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


def _verify_group(
    root: Root, folder: str, name: str, asset: dict[str, Any], report: Report
) -> None:
    import json

    import zarr

    group_path = f"{folder}/{name}.zarr"
    doc = _json(root, f"{group_path}/zarr.json", report)
    if doc is None:
        return
    report.objects += 1
    consolidated = (doc.get("consolidated_metadata") or {}).get("metadata", {})
    described = asset.get("cube:variables", {})
    try:  # left by a build killed while publishing (see lake.cube.publish)
        journal = root.read_json(group_path, ".publishing.json").get("arrays", {})
    except FileNotFoundError:
        journal = {}
    for array_name, meta in consolidated.items():
        doc_path = f"{group_path}/{array_name}/zarr.json"
        report.objects += 1
        try:
            raw = root.fs().cat_file(root.path(doc_path))
            own = json.loads(raw)
        except FileNotFoundError:
            report.add(doc_path, "is missing")
            continue
        except ValueError as exc:
            report.add(doc_path, f"is not valid JSON ({exc})")
            continue
        if own != meta:
            if journal.get(array_name) == hashlib.sha256(raw).hexdigest():
                report.notes.append(f"{doc_path}: holds the metadata of an append a stopped "
                                    "build did not publish (readers use the consolidated "
                                    "metadata); the next build settles it")  # fmt: skip
            else:
                report.add(doc_path, "differs from its entry in the group's consolidated "
                           "metadata")  # fmt: skip
                continue
        if meta.get("node_type") != "array":
            continue
        expected = described.get(array_name, {}).get("shape")
        if expected is not None and list(meta["shape"]) != expected:
            _shape_differs(f"{group_path}/{array_name}", meta, expected, report)
        try:
            array = zarr.open_array(root.zarr_store(folder, f"{name}.zarr", read_only=True),
                                    path=array_name, mode="r")  # fmt: skip
            if "time" in (meta.get("dimension_names") or []):
                _check_objects(root, f"{group_path}/{array_name}", array, report)
            _read_all(array, report, f"{group_path}/{array_name}")
        except Exception as exc:
            report.add(f"{group_path}/{array_name}", f"cannot be opened ({exc})")


def _shape_differs(path: str, meta: dict[str, Any], expected: list[int], report: Report) -> None:
    """A cube longer in time than its catalogue says is a catalogue one build behind."""
    dims = list(meta.get("dimension_names") or [])
    shape = list(meta["shape"])
    if "time" in dims and len(shape) == len(expected):
        axis = dims.index("time")
        others = [i for i in range(len(shape)) if i != axis]
        others_equal = all(shape[i] == expected[i] for i in others)
        if others_equal and shape[axis] > expected[axis]:
            report.notes.append(f"{path}: has {shape[axis]} time steps, the catalogue still "
                                f"says {expected[axis]} (a build stopped before the catalogue); "
                                "the next `lake build` rewrites it")  # fmt: skip
            return
    report.add(path, f"has shape {meta['shape']}, the catalogue says {expected}")


def _check_objects(root: Root, path: str, array: Any, report: Report) -> None:
    """Every shard of a time-dependent array exists (a missing one would read as fill).

    Objects beyond the published shape are chunks of an append a stopped build did not
    publish (the next build overwrites them): notes, like temporary files of a killed
    writer on local disk.
    """
    block = array.shards or array.chunks
    counts = [-(-n // b) for n, b in zip(array.shape, block, strict=True)]
    expected = {"/".join(map(str, idx)) for idx in itertools.product(*map(range, counts))}
    fs = root.fs()
    prefix = root.path(path, "c")
    found = {p.removeprefix(prefix + "/") for p in fs.find(prefix)} if fs.exists(prefix) else set()
    missing = sorted(expected - found)
    if missing:
        report.add(path, f"lacks {len(missing)} of its {len(expected)} shard objects (first: "
                   f"c/{missing[0]}); they would read as fill values")  # fmt: skip
    extra = found - expected
    if extra:
        report.notes.append(f"{path}: {len(extra)} objects that are not shards of the "
                            "published shape (an append a stopped build did not publish, or "
                            "its temporary files; readers never see them)")  # fmt: skip


def _read_all(array: Any, report: Report, subject: str) -> None:
    """Decode every shard (or chunk) of ``array``, one at a time."""
    import zarr

    from lake.cube import fast_codecs

    block = array.shards or array.chunks
    ranges = [range(0, n, b) for n, b in zip(array.shape, block, strict=True)]
    with zarr.config.set(fast_codecs()):
        for starts in itertools.product(*ranges):
            selection = tuple(slice(s, s + b) for s, b in zip(starts, block, strict=True))
            report.objects += 1
            try:
                array[selection]
            except Exception as exc:
                where = ", ".join(f"{s.start}:{min(s.stop, n)}"
                                  for s, n in zip(selection, array.shape, strict=True))  # fmt: skip
                report.add(subject, f"block [{where}] cannot be decoded "
                           f"({type(exc).__name__}: {exc})")  # fmt: skip
