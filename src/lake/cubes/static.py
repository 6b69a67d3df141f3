"""Cubes without a time axis: static layers (bathymetry, masks, cell areas) and
climatologies along their own axis (a ``month`` dimension).

Such a cube is one file, built whole into one layout, ``maps``; nothing is appended. The
layout records which version of its file it holds (``.lake-source.json``: the sha256 of the
file's URL, size and version, as the scan record keys files, and when it was built); a
build with the same file writes nothing.

A changed file replaces the layout without a failed build ever leaving it half-written:
the new layout is first built and published whole in ``<dataset>/.maps.next.zarr``; only
then are its objects copied over the published ones (shards first, documents last) and
objects of the old grid that the new one lacks removed. A build stopped before the staged
layout is complete leaves the published one as it was (the next build drops the staging);
one stopped during the copy is completed by the next build (:func:`recover_static`).
Readers opening the layout during the copy itself may see shards of both versions: object
stores cannot swap a folder.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any, Final, Literal

import xarray as xr
from pydantic import BaseModel

from lake.cubes.blocks import ArrayRef
from lake.cubes.chunking import plan_static_chunks
from lake.cubes.index import SourceIndex
from lake.cubes.publish import GROUP_DOC, JOURNAL
from lake.cubes.template import array_metadata, lazy_array, plain_encoding, render_layout
from lake.errors import SourceError
from lake.storage import redact

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lake.cubes.plan import CubePlan
    from lake.cubes.source import CubeReader, SourceFile
    from lake.spec import Dataset
    from lake.storage import Root

STATIC_LAYOUT: Final = "maps"
SOURCE_RECORD = ".lake-source.json"
SOURCE_FORMAT: Final = "lake-static-source/1"


class SourceRecord(BaseModel):
    """``maps.zarr/.lake-source.json`` of a static cube: the version of the file it holds."""

    format: Literal["lake-static-source/1"] = SOURCE_FORMAT
    key: str
    """sha256 of the file's URL, size and version (or of its scan, without a version)."""
    built: str
    """When the layout was built (ISO 8601, UTC): the layer's date in the catalogue."""


def is_static(infos: Sequence[SourceFile]) -> bool:
    """Whether the scanned files form a cube without a time axis (stops on a mix)."""
    static = [i for i in infos if not len(i.times)]
    if static and len(static) != len(infos):
        timed = next(i for i in infos if len(i.times))
        raise SourceError(
            f"{redact(static[0].url)} and {redact(timed.url)}",
            "are one without a time axis and one with: a cube is either a static layer or a "
            "series along time",
            "build the static layer as a dataset of its own",
        )
    if len(static) > 1:
        raise SourceError(
            ", ".join(redact(i.url) for i in static[:3]) + (", ..." if len(static) > 3 else ""),
            f"are {len(static)} files without a time axis: a static layer is built from one "
            "file (tiles are not mosaicked)",
            "give the layer's one file in the spec's `netcdf`, or merge the tiles first "
            "(e.g. `gdal_merge.py` or `xr.combine_by_coords(...).to_netcdf(...)`)",
        )
    return bool(static)


def staging_group(dataset_id: str) -> str:
    return f"{dataset_id}/.{STATIC_LAYOUT}.next.zarr"


def read_record(root: Root, group: str) -> SourceRecord | None:
    try:
        return SourceRecord.model_validate(root.read_json(group, SOURCE_RECORD))
    except (FileNotFoundError, ValueError):
        return None


def source_key(info: SourceFile, version_key: str | None) -> str:
    if version_key is not None:
        return version_key
    text = repr((info.url, info.size, sorted(info.variables), sorted(info.statics.items())))
    return hashlib.sha256(text.encode()).hexdigest()


def plan_static(
    root: Root,
    dataset: Dataset,
    info: SourceFile,
    version_key: str | None,
    reader: CubeReader,
) -> CubePlan:
    """The whole layout of a static cube, or nothing when it holds this file already."""
    from lake.cubes.plan import CubePlan, LayoutWork, layout_group

    cube = dataset.cube
    assert cube is not None
    if cube.layouts is not None and cube.layouts != [STATIC_LAYOUT]:
        raise SourceError(
            redact(info.url),
            "has no time axis, so it forms a static layer, which has one layout (maps)",
            "remove `layouts` from the spec (or give `layouts: [maps]`)",
        )
    final = layout_group(dataset.id, STATIC_LAYOUT)
    key = source_key(info, version_key)
    record = read_record(root, final)
    if record is not None and record.key == key:
        return CubePlan(dataset.id, 1, None, 0)
    published = root.fs().exists(root.path(final, GROUP_DOC))
    if published and (
        "time" in root.read_json(final, GROUP_DOC).get("consolidated_metadata", {}).get(
            "metadata", {})
    ):  # fmt: skip
        raise SourceError(
            redact(info.url),
            f"has no time axis, but the published cube {dataset.id} has one: a static layer "
            "would replace the series",
            "build the layer as a dataset of its own, or delete the cube to rebuild it",
        )
    group = staging_group(dataset.id) if published else final
    index = SourceIndex((info.url,), (0,), info.times, "", "", info.variables)
    first = reader.open(info.url)
    try:
        template, encoding = _template(first, info, cube.chunking)
        documents = render_layout(template, encoding)
    finally:
        first.close()
    targets = {
        name: ArrayRef(root, group, name, array_metadata(documents, name))
        for name in info.variables
    }
    work = LayoutWork(STATIC_LAYOUT, group, 0, documents, targets, {},
                      replaces=final if published else None, source_key=key)  # fmt: skip
    return CubePlan(dataset.id, 1, index, 0, [work])


def _template(
    first: xr.Dataset, info: SourceFile, chunking: Any
) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """The layout's dataset (lazy placeholders for the data variables) and its encoding."""
    base = first.drop_vars(list(info.variables))
    encoding: dict[str, dict[str, Any]] = {}
    for name in base.variables:
        encoding[str(name)] = plain_encoding(base.variables[name])
        base.variables[name].encoding = {}
    for name, schema in info.variables.items():
        src = first.variables[name]
        plan = plan_static_chunks(schema.dims, schema.shape, max(src.dtype.itemsize, 1), chunking)
        base[name], encoding[name] = lazy_array(
            schema.dims, schema.shape, src.dtype, dict(src.attrs), plan
        )
    base.attrs = dict(first.attrs)
    return base, encoding


def finish_static(root: Root, group: str, replaces: str | None, key: str) -> None:
    """After the layout is published in ``group``: record the source version it holds
    and, when it is a staged replacement, copy it over ``replaces``."""
    record = SourceRecord(key=key, built=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    # In a staging group the record also says that the staged layout is complete.
    root.put(root.path(group, SOURCE_RECORD), record.model_dump_json().encode())
    if replaces is None:
        return
    _copy_over(root, group, replaces)
    root.put(root.path(replaces, SOURCE_RECORD), record.model_dump_json().encode())
    root.fs().rm(root.path(group), recursive=True)


def _copy_over(root: Root, staged: str, final: str) -> None:
    """Copy a complete staged layout over the published one: shards, array documents, the
    group document; then remove objects of the old grid that the new one lacks."""
    fs = root.fs()
    base = root.path(staged).rstrip("/") + "/"
    names = [str(p)[len(base):] for p in fs.find(base)]  # fmt: skip
    names = [n for n in names if n not in (JOURNAL, SOURCE_RECORD)]
    order = sorted(names, key=lambda n: (n == GROUP_DOC, n.endswith(GROUP_DOC), n))
    for name in order:
        fs.copy(base + name, root.path(final, name))
    keep = set(names)
    final_base = root.path(final).rstrip("/") + "/"
    for path in fs.find(final_base):
        name = str(path)[len(final_base) :]
        if name not in keep and name != SOURCE_RECORD:
            fs.rm(path)


def recover_static(root: Root, dataset_id: str) -> None:
    """Complete a replacement stopped during its copy; drop a staging never completed."""
    from lake.cubes.plan import layout_group

    fs = root.fs()
    staged = staging_group(dataset_id)
    if not fs.exists(root.path(staged)):
        return
    record = read_record(root, staged)
    if record is not None:  # complete: finish the copy
        final = layout_group(dataset_id, STATIC_LAYOUT)
        _copy_over(root, staged, final)
        root.put(root.path(final, SOURCE_RECORD), record.model_dump_json().encode())
    fs.rm(root.path(staged), recursive=True)
