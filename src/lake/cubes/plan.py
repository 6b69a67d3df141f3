"""Incremental planning of a cube build: what is published, what is new, what to write.

Rules (documented in the README):

* The published cube is the truth. Files whose times are all already in it are skipped.
* New files must come strictly after the published end; a file that adds times inside the
  published range stops the build (backfill is not supported: delete the cube to rebuild
  it).
* With ``updates: replace``, a new version of a file (another listing key than the one
  recorded for its steps, see :mod:`lake.cubes.steps`) replaces the published steps it
  covers, in every layout: only the shards holding them are rewritten. Several files
  covering one step stop the build, naming both. Without it (``refuse``), a file whose
  steps are all published is skipped, changed or not, and one that starts inside the
  published range stops the build.
* Each layout is extended from its own published length, so a build interrupted between
  publishing ``maps`` and ``timeseries`` is completed by the next run.
* Time units chosen at the first build stay fixed; new times must be exact integers in them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lake.cubes.blocks import ArrayRef
from lake.cubes.chunking import ChunkPlan, default_layouts
from lake.cubes.index import SourceIndex, index_sources
from lake.cubes.publish import Published, check_packing, has_chunk_checksums, read_published
from lake.cubes.source import SourceFile, digest
from lake.cubes.steps import Steps, StepSources, claims, ranges_of, record_of
from lake.cubes.template import TIME_CHUNK, array_metadata, build_template, render_layout
from lake.cubes.timeaxis import choose_time_units, encode_times
from lake.errors import SourceError, TargetError
from lake.spec import LAYOUTS
from lake.storage import redact

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from lake.cubes.source import CubeReader
    from lake.spec import Dataset
    from lake.storage import Root

_SAME_CALENDAR = {"gregorian": "standard", "": "standard"}


@dataclass(frozen=True)
class LayoutWork:
    """One layout to extend: its published length and the new metadata to publish."""

    layout: str
    group: str
    published_ntime: int
    documents: dict[str, bytes]
    targets: dict[str, ArrayRef]
    committed: dict[str, ArrayRef]
    replaces: str | None = None
    """A static cube's replacement is built in a staging group, then copied over this one."""
    source_key: str | None = None
    """A static cube's source version, recorded once it is published."""
    replaced: tuple[tuple[int, int], ...] = ()
    """Published steps rewritten from newer source files, as ``[start, stop)`` runs."""

    @property
    def replaced_steps(self) -> int:
        return sum(stop - start for start, stop in self.replaced)


@dataclass(frozen=True)
class CubePlan:
    dataset: str
    files_found: int
    index: SourceIndex | None
    ntime: int
    layouts: list[LayoutWork] = field(default_factory=list)
    steps: StepSources | None = None
    """The record of each step's source version to write once every layout is published."""
    adopt: bool = False
    """The record is absent and the spec replaces updates: write it even if nothing else."""

    @property
    def empty(self) -> bool:
        return not self.layouts


def layout_group(dataset_id: str, layout: str) -> str:
    return f"{dataset_id}/{layout}.zarr"


def _calendar(name: str) -> str:
    return _SAME_CALENDAR.get(name.lower(), name.lower())


def plan_cube(
    root: Root,
    dataset: Dataset,
    infos: Sequence[SourceFile],
    reader: CubeReader,
    keys: Mapping[str, str | None] | None = None,
) -> CubePlan:
    """What a build writes: each layout's new metadata and the blocks to write, from the
    published cube and the scans of the source files (``reader`` opens the first one;
    ``keys``: each file's listing key, by URL, which tells a new version of a file)."""
    cube = dataset.cube
    assert cube is not None
    keys = keys or {}
    replace = cube.updates == "replace"
    existing = {layout: read_published(root, layout_group(dataset.id, layout))
                for layout in LAYOUTS}  # fmt: skip
    chosen = cube.layouts or [k for k, p in existing.items() if p is not None]
    published: dict[str, Published | None] = {layout: existing[layout] for layout in chosen}
    base = _most_advanced(dataset.id, published)
    last = base.times[-1] if base is not None and base.ntime else None

    new = _new_files(infos, base, replace)
    axis = base.times if base is not None else np.asarray([], dtype="datetime64[ns]")
    if new:
        new_index = index_sources(new)
        added = new_index.times if last is None else new_index.times[new_index.times > last]
        axis = np.concatenate([axis, added]) if base is not None else added
        if base is not None:
            _check_against_published(base, next(i for i in new if i.url == new_index.files[0]),
                                     dataset.id)  # fmt: skip
    ntime = len(axis)
    steps = Steps.read(root, dataset.id, base.ntime if base is not None else 0)
    claimed = claims(axis, infos, keys)
    replacing: list[SourceFile] = []
    replaced: tuple[tuple[int, int], ...] = ()
    if replace and base is not None:
        index_sources(infos, axis)  # one file per step, one grid, all on the axis
        changed: list[int] = []
        by_url = {info.url: info for info in infos}
        for url, key, lo, end in claimed:
            hi = min(end, base.ntime)
            if lo < hi and steps.changed(key, lo, hi):
                _check_against_published(base, by_url[url], dataset.id)
                replacing.append(by_url[url])
                changed.extend(range(lo, hi))
        replaced = ranges_of(changed)
    record = record_of(steps, ntime, [c[1:] for c in claimed])
    if not published:  # a first build and no layouts named: by the cube's shape
        published = dict.fromkeys(default_layouts(infos[0].variables))
    lagging = {k: (p.ntime if p else 0) for k, p in published.items()}
    adopt = replace and base is not None and not steps.present
    if all(n == ntime for n in lagging.values()) and not replaced:
        return CubePlan(dataset.id, len(infos), None, ntime, steps=record, adopt=adopt)

    start = min(lagging.values())
    needed = [i for i in infos if start < ntime and i.times[-1] >= axis[start]]
    if start < ntime and not needed:
        raise SourceError(
            f"dataset {dataset.id}",
            f"has a layout behind the others but the source files for time step {start} on "
            "are gone",
            "restore the source files, or delete the cube to rebuild it",
        )
    needed += [i for i in replacing if i not in needed]
    index = index_sources(needed, axis)
    if base is not None:
        units, calendar = base.time_units, base.calendar
        if _calendar(calendar) != _calendar(index.calendar):
            raise SourceError(
                redact(index.files[0]),
                f"uses calendar {index.calendar!r}, the published cube {calendar!r}",
                "build files with another calendar as a separate dataset",
            )
    else:
        units = choose_time_units(axis, index.time_units, index.calendar)
    if encode_times(axis, units, index.calendar) is None:
        raise SourceError(
            redact(index.files[-1]),
            f"has times that are not whole numbers of the cube's time units {units!r}",
            "delete the cube to rebuild it with finer time units",
        )

    first = reader.open(sorted(infos, key=lambda i: i.times[0])[0].url)
    try:
        works = []
        for layout, pub in published.items():
            rewritten = tuple((lo, min(hi, pub.ntime)) for lo, hi in replaced
                              if pub is not None and lo < pub.ntime)  # fmt: skip
            if pub is not None and pub.ntime == ntime and not rewritten:
                continue
            group = layout_group(dataset.id, layout)
            checksums = pub is None or has_chunk_checksums(pub)
            # A published layout keeps the chunks it was built with (the defaults may have
            # changed since); chunking the spec names explicitly is checked against them.
            keep = {} if pub is None or "chunking" in cube.model_fields_set else {
                name: ChunkPlan.of_array(pub.arrays[name])
                for name in index.variables if name in pub.arrays
            }  # fmt: skip
            template, encoding = build_template(
                first, index, axis, units, layout, cube.chunking, checksums,
                time_chunk=pub.time_chunk if pub is not None else TIME_CHUNK, keep=keep,
            )  # fmt: skip
            documents = render_layout(template, encoding)
            targets = {
                name: ArrayRef(root, group, name, array_metadata(documents, name))
                for name in index.variables
            }
            committed = {}
            if pub is not None:
                check_packing(pub, index, group)
                for name, ref in targets.items():
                    _check_same_chunks(pub.arrays[name], ref.metadata, f"{root.display}/{group}")
                    committed[name] = ArrayRef(root, group, name, pub.arrays[name])
            works.append(LayoutWork(layout, group, pub.ntime if pub else 0, documents,
                                    targets, committed, replaced=rewritten))  # fmt: skip
    finally:
        first.close()
    return CubePlan(dataset.id, len(infos), index, ntime, works, steps=record, adopt=adopt)


def _new_files(
    infos: Sequence[SourceFile], base: Published | None, replace: bool
) -> list[SourceFile]:
    """The files with steps after the published end; a file adding steps inside the
    published range stops the build, and so, unless updates replace, does one starting
    inside it."""
    last = base.times[-1] if base is not None and base.ntime else None
    new: list[SourceFile] = []
    for info in infos:
        if last is None or info.times[-1] > last:
            inside = info.times[info.times <= last] if last is not None else info.times[:0]
            if len(inside) and not replace:
                raise SourceError(
                    redact(info.url),
                    f"starts at {info.times[0]}, inside the published cube (which ends at "
                    f"{last}): the cube is append-only",
                    "remove the file, set `cube: {updates: replace}` to replace the published "
                    "steps it covers, or delete the cube to rebuild it from all files",
                )
            if base is not None and len(inside) and not np.isin(inside, base.times).all():
                raise _backfill(info)
            new.append(info)
        elif base is not None and not np.isin(info.times, base.times).all():
            raise _backfill(info)
    return new


def _backfill(info: SourceFile) -> SourceError:
    return SourceError(
        redact(info.url),
        "has time steps inside the published range that the cube does not hold "
        "(backfill is not supported)",
        "remove the file, or delete the cube to rebuild it from all files",
    )


def _most_advanced(dataset_id: str, published: Mapping[str, Published | None]) -> Published | None:
    present = [p for p in published.values() if p is not None]
    if not present:
        return None
    base = max(present, key=lambda p: p.ntime)
    for layout, pub in published.items():
        if pub is not None and not np.array_equal(pub.times, base.times[: pub.ntime]):
            raise TargetError(
                f"{dataset_id}/{layout}.zarr",
                "has a time axis that is not a prefix of the other layout's",
                "delete the dataset's layouts to rebuild them together",
            )
    return base


def _check_against_published(base: Published, info: SourceFile, dataset_id: str) -> None:
    for name, value in base.statics.items():
        theirs = info.statics.get(name)
        if theirs is not None and theirs != digest(value):
            raise SourceError(
                redact(info.url),
                f"its {name} differs from the published cube {dataset_id}: the grids do not match",
                "build files with another grid as a separate dataset, or delete the cube",
            )


def _check_same_chunks(published: dict[str, object], new: dict[str, object], where: str) -> None:
    for key in ("chunk_grid", "codecs", "data_type", "dimension_names"):
        if published.get(key) != new.get(key):
            raise TargetError(
                where,
                f"was built with another {key.replace('_', ' ')} than the spec now asks for",
                "restore the spec's previous `chunking`, or delete the layout to rebuild it",
            )
