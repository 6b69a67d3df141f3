"""Verify a published cube layout: documents, shapes, shard objects, every chunk decoded.

Every array's own ``zarr.json`` equals its entry in the group's consolidated metadata (a
flipped byte in either differs); shapes agree with the catalogue; every chunk of every
array is read and decoded. Chunks carry a crc32c checksum (and shard indexes their own),
so a flipped byte in a shard fails its decode instead of passing silently. What a killed
build leaves (chunks past the published shape, array documents the publish journal names,
a catalogue behind the cube's length) is reported as notes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import TYPE_CHECKING, Any

from lake.cubes.blocks import fast_codecs
from lake.cubes.publish import read_empty_shards, read_journal

if TYPE_CHECKING:
    from lake.report import Report
    from lake.storage import Root


def verify_layout(
    root: Root, folder: str, name: str, asset: dict[str, Any], report: Report
) -> None:
    import zarr

    group_path = f"{folder}/{name}.zarr"
    doc = report.read_json(root, f"{group_path}/zarr.json")
    if doc is None:
        return
    report.objects += 1
    consolidated = (doc.get("consolidated_metadata") or {}).get("metadata", {})
    described = asset.get("cube:variables", {})
    # Left by a build killed while publishing (see lake.cubes.publish).
    left = read_journal(root, group_path)
    empty = read_empty_shards(root, group_path)
    journal = left.arrays if left is not None else {}
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
            # Arrays written block by block: along time, or a static layer's data.
            static_data = "time" not in consolidated and (
                described.get(array_name, {}).get("type") == "data")  # fmt: skip
            if "time" in (meta.get("dimension_names") or []) or static_data:
                _check_objects(root, f"{group_path}/{array_name}", array, report,
                               empty.get(array_name, set()))  # fmt: skip
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


def _check_objects(root: Root, path: str, array: Any, report: Report, empty: set[str]) -> None:
    """Every shard of a block-written array exists (a missing one would read as fill),
    but those the layout records as all fill (``empty``: keys such as ``c/0/1``).

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
    missing = sorted(expected - found - {k.removeprefix("c/") for k in empty})
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
