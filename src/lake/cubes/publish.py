"""Publishing a cube layout: metadata last, a journal for a killed publish, published state.

:func:`publish` copies the rendered documents to the target: a journal of the new array
documents, coordinate chunks, array documents, then the group document, which is the commit
point readers see (``xr.open_zarr`` reads consolidated metadata from it).

A build killed before the group document leaves orphan chunks past the published shape,
at most a rewritten last partial shard (or ``time`` chunk) whose published part holds the
same values as before, and possibly array documents ahead of the consolidated metadata,
which the journal names and :func:`recover` rolls back before the next build.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import xarray as xr
from pydantic import BaseModel, Field

from lake.errors import SourceError, TargetError
from lake.storage import redact

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from lake.cubes.blocks import Written
    from lake.cubes.index import SourceIndex
    from lake.storage import Root

from lake.cubes.netcdf import PACKING_ATTRS

GROUP_DOC = "zarr.json"


@dataclass(frozen=True)
class Published:
    """What readers currently see of a layout (from its consolidated group document)."""

    times: np.ndarray
    time_units: str
    calendar: str
    arrays: dict[str, dict[str, Any]]
    statics: dict[str, np.ndarray]

    @property
    def ntime(self) -> int:
        return len(self.times)

    @property
    def time_chunk(self) -> int:
        grid = self.arrays["time"]["chunk_grid"]["configuration"]["chunk_shape"]
        return int(grid[0])


def read_published(root: Root, group: str) -> Published | None:
    """The published state of ``group``, or ``None`` if nothing is published there."""
    fs = root.fs()
    fs.invalidate_cache()
    doc_path = root.path(group, GROUP_DOC)
    if not fs.exists(doc_path):
        return None
    try:
        doc = json.loads(fs.cat_file(doc_path))
        arrays = doc["consolidated_metadata"]["metadata"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=xr.SerializationWarning)  # cftime dates
            ds = xr.open_zarr(
                root.zarr_store(group, read_only=True),
                consolidated=True,
                mask_and_scale=False,
                zarr_format=3,
            )
        times = np.asarray(ds["time"].values)
        units = str(ds["time"].encoding["units"])
        calendar = str(ds["time"].encoding.get("calendar", "standard"))
        statics = {
            str(n): np.asarray(v.values) for n, v in ds.variables.items() if "time" not in v.dims
        }
    except Exception as exc:
        raise TargetError(
            f"{root.display}/{group}",
            f"exists but is not a cube this tool can extend ({type(exc).__name__}: {exc})",
            "delete it to rebuild it from scratch, or point the spec at another root",
        ) from None
    return Published(times, units, calendar, arrays, statics)


JOURNAL = ".publishing.json"
JOURNAL_FORMAT: Final = "lake-publish-journal/1"


class PublishJournal(BaseModel):
    """``<layout>.zarr/.publishing.json``, present only while a publish runs: the sha256 of
    each new array document, by array name. Journals written before the format was kept
    hold only ``arrays``."""

    format: Literal["lake-publish-journal/1"] = JOURNAL_FORMAT
    arrays: dict[str, str] = Field(default_factory=dict)


def read_journal(root: Root, group: str) -> PublishJournal | None:
    """The journal a killed publish left in ``group``, or None."""
    try:
        return PublishJournal.model_validate(root.read_json(group, JOURNAL))
    except FileNotFoundError:
        return None


EMPTY_SHARDS = ".lake-empty-shards.json"
EMPTY_SHARDS_FORMAT: Final = "lake-empty-shards/1"


class EmptyShards(BaseModel):
    """``<layout>.zarr/.lake-empty-shards.json``: the shards whose every value is the fill
    value, by array, which no object holds (readers get the fill value for them). ``lake
    verify`` accepts exactly these missing; any other missing shard is a lost object."""

    format: Literal["lake-empty-shards/1"] = EMPTY_SHARDS_FORMAT
    arrays: dict[str, list[str]] = Field(default_factory=dict)


def read_empty_shards(root: Root, group: str) -> dict[str, set[str]]:
    """The recorded all-fill shards of a layout, by array (empty when none are)."""
    try:
        record = EmptyShards.model_validate(root.read_json(group, EMPTY_SHARDS))
    except FileNotFoundError:
        return {}
    return {name: set(keys) for name, keys in record.arrays.items()}


def _record_empty_shards(root: Root, group: str, blocks: Sequence[Written]) -> None:
    """Merge this build's blocks into the record: all-fill shards in, written ones out.
    Written only when it changes, before the commit, so a rerun writes nothing."""
    before = read_empty_shards(root, group)
    after = {name: set(keys) for name, keys in before.items()}
    for block in blocks:
        keys = after.setdefault(block.array, set())
        if block.empty:
            keys.add(block.shard)
        else:
            keys.discard(block.shard)
    after = {name: keys for name, keys in after.items() if keys}
    if after != before:
        record = EmptyShards(arrays={name: sorted(keys) for name, keys in sorted(after.items())})
        root.put(root.path(group, EMPTY_SHARDS), record.model_dump_json(indent=1).encode())


def publish(
    root: Root, group: str, documents: Mapping[str, bytes], blocks: Sequence[Written] = ()
) -> None:
    """Copy rendered documents: small arrays, then array documents, then the group document.

    Array documents are separate objects, so a build killed among them would leave some
    arrays' own ``zarr.json`` ahead of the consolidated metadata readers use. A journal
    written first records the sha256 of each new array document; ``lake verify`` accepts
    exactly those, and the next build rolls them back (:func:`recover`) before planning.
    ``blocks``: what this build's block tasks wrote, for the record of all-fill shards.
    """
    chunks = [k for k in documents if not k.endswith(GROUP_DOC)]
    arrays = [k for k in documents if k.endswith(GROUP_DOC) and k != GROUP_DOC]
    journal = {k.removesuffix("/" + GROUP_DOC): hashlib.sha256(documents[k]).hexdigest()
               for k in arrays}  # fmt: skip
    root.put(root.path(group, JOURNAL), PublishJournal(arrays=journal).model_dump_json().encode())
    _record_empty_shards(root, group, blocks)
    for key in [*chunks, *arrays, GROUP_DOC]:
        root.put(root.path(group, key), documents[key])
    root.fs().rm(root.path(group, JOURNAL))


def recover(root: Root, group: str) -> bool:
    """Finish what a killed :func:`publish` left: restore array documents from the
    consolidated metadata (what readers saw) and drop the journal. True if there was one."""
    fs = root.fs()
    journal = root.path(group, JOURNAL)
    if not fs.exists(journal):
        return False
    try:
        doc = root.read_json(group, GROUP_DOC)
    except FileNotFoundError:
        doc = None  # killed before the first group document: nothing was published
    arrays = (doc or {}).get("consolidated_metadata", {}).get("metadata", {})
    for name, meta in arrays.items():
        root.put(root.path(group, name, GROUP_DOC), json.dumps(meta, indent=2).encode())
    fs.rm(journal)
    return True


def has_chunk_checksums(published: Published) -> bool:
    """Whether the published arrays' inner chunks end with a crc32c codec.

    Only arrays written block by block count: the ``time`` coordinate is rendered with
    xarray's default codecs (which array comes first depends on the variables' names).
    """
    for name, meta in published.arrays.items():
        if name == "time" or "time" not in (meta.get("dimension_names") or []):
            continue
        codecs = meta.get("codecs", [])
        for codec in codecs:
            if codec.get("name") == "sharding_indexed":
                codecs = codec.get("configuration", {}).get("codecs", [])
        return any(c.get("name") == "crc32c" for c in codecs)
    return True


def check_packing(published: Published, index: SourceIndex, group: str) -> None:
    """New files must hold the published variables, with the same dtype and CF packing."""
    for name, schema in index.variables.items():
        meta = published.arrays.get(name)
        if meta is None:
            raise SourceError(
                redact(index.files[0]),
                f"has variable {name}, which the published cube {group} lacks",
                "build it as a new dataset, or delete the cube to rebuild it",
            )
        attrs = meta.get("attributes", {})
        ours = {k: v for k, v in schema.packing if k != "_FillValue"}
        theirs = {
            k: repr(np.asarray(attrs[k]).tolist())
            for k in PACKING_ATTRS
            if k in attrs and k != "_FillValue"
        }
        numeric = schema.dtype.startswith(("int", "uint", "float", "bool"))
        if ours != theirs or (numeric and meta.get("data_type") != schema.dtype):
            raise SourceError(
                redact(index.files[0]),
                f"stores {name} as {schema.dtype} {ours} but the published cube {group} as "
                f"{meta.get('data_type')} {theirs}",
                "delete the cube to rebuild it with the new packing",
            )
