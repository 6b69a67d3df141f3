"""The sha256 of every item document the catalogue writer wrote, per collection.

``<dataset>/.stac-digests.jsonl``, JSON Lines sorted by item id, so that a build compares
it with the items it generates as two sorted streams, holding neither::

    {"format": "lake-stac-digests/3", "manifest": "<version of table.json described>"}
    ["occ.year-2019", "ef56…", "removing"]     no longer linked; deleted by the next step
    ["occ.year-2020", "ab12…"]
    ["occ.year-2021", ["ab12…", "cd34…"]]      mid-rewrite: either version is accepted

``lake verify`` accepts an item document whose sha256 is recorded here. The first two
layouts (one JSON object in ``.stac-digests.json``) are still read.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lake.errors import TargetError

if TYPE_CHECKING:
    from lake.storage import Root

DIGESTS = ".stac-digests.jsonl"
LEGACY = ".stac-digests.json"
FORMAT = "lake-stac-digests/3"
DOCUMENTS = ".stac-documents.json"
DOCUMENTS_FORMAT: Final = "lake-stac-documents/1"

Digest = str | list[str]
"""One digest, or every digest a document may have while a build rewrites it."""


class DigestsHeader(BaseModel):
    """The first line of ``<dataset>/.stac-digests.jsonl``."""

    format: Literal["lake-stac-digests/3"]
    manifest: str | None = None
    """The version of the table manifest every item document was written from."""


class DocumentDigests(BaseModel):
    """``.stac-documents.json``: the sha256 of ``catalog.json`` and of each
    ``collection.json`` (by path below the root), and the format. Records written before
    the format was kept are the bare mapping, read as the same version."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Digest] = Field(init=False)

    format: Literal["lake-stac-documents/1"] = DOCUMENTS_FORMAT

    @property
    def digests(self) -> dict[str, Digest]:
        return dict(self.__pydantic_extra__ or {})


def read_documents(root: Root) -> dict[str, Digest]:
    """The recorded digests of the catalogue's own documents (empty when there are none)."""
    try:
        raw = root.read_json(DOCUMENTS)
    except FileNotFoundError:
        return {}
    try:
        return DocumentDigests.model_validate(raw).digests
    except ValidationError:
        raise TargetError(
            f"{root.display}/{DOCUMENTS}", "is not a record of document digests",
            "delete it: the next build rewrites the catalogue's documents and records them",
        ) from None  # fmt: skip


def write_documents(root: Root, recorded: dict[str, Digest]) -> None:
    """Replace the record of the catalogue's document digests (one atomic write)."""
    doc = {"format": DOCUMENTS_FORMAT, **recorded}
    root.put(root.path(DOCUMENTS), json.dumps(doc, indent=1, ensure_ascii=False).encode())


class Entry(NamedTuple):
    id: str
    digest: Digest
    removing: bool = False

    def line(self) -> bytes:
        doc = [self.id, self.digest, "removing"] if self.removing else [self.id, self.digest]
        return orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)

    @classmethod
    def parse(cls, line: bytes) -> Entry:
        """The entry of one `line`."""
        doc = orjson.loads(line)
        return cls(doc[0], doc[1], len(doc) > 2)


def accepted(digest: Digest | None, new: str) -> list[str]:
    """Every digest a document may hold once ``new`` is being written over ``digest``."""
    before = [] if digest is None else [digest] if isinstance(digest, str) else list(digest)
    return [*dict.fromkeys([*before, new])]


def read(root: Root, dataset: str, header: dict[str, Any] | None = None) -> Iterator[Entry]:
    """The recorded entries in id order, streamed (earlier layouts are sorted in memory).

    ``header``, if given, receives the record's first line (its format and the table
    manifest version its items were written from) once the first entry is asked for, so
    that one read gives both; it stays empty for earlier layouts and a missing record.
    """
    fs = root.fs()
    try:
        with fs.open(root.path(dataset, DIGESTS), "rb") as handle:
            try:
                first = DigestsHeader.model_validate_json(handle.readline() or b"{}")
            except ValidationError:
                raise _unreadable(
                    root, dataset, "is not a digest record this version reads"
                ) from None
            if header is not None:
                header.update(first.model_dump(exclude_none=True))
            for line in handle:
                yield Entry.parse(line)
        return
    except FileNotFoundError:
        pass
    except (orjson.JSONDecodeError, IndexError, TypeError, KeyError):
        raise _unreadable(root, dataset, "is damaged (not JSON Lines of [id, digest])") from None
    try:
        with fs.open(root.path(dataset, LEGACY), "rb") as handle:
            doc = json.loads(handle.read())
    except FileNotFoundError:
        return
    if "format" in doc:
        items, removing = doc["items"], set(doc.get("removing", []))
    else:
        items, removing = doc, set()
    for item_id in sorted(items):
        yield Entry(item_id, items[item_id], item_id in removing)


def _unreadable(root: Root, dataset: str, problem: str) -> TargetError:
    return TargetError(
        f"{root.display}/{dataset}/{DIGESTS}", problem,
        "delete it: the next build rewrites every item of the collection and records them again",
    )  # fmt: skip


def as_map(root: Root, dataset: str) -> dict[str, Digest]:
    """Every recorded digest by item id (for checking documents one by one)."""
    return {entry.id: entry.digest for entry in read(root, dataset)}


def write(root: Root, dataset: str, entries: Iterable[Entry], manifest: str | None = None
          ) -> None:  # fmt: skip
    """Replace the record with ``entries`` (in id order), in one atomic write.

    ``manifest``: the version of the table manifest that every item document now on
    storage was written from. Give it only when that holds (after the items are written).
    """
    head = DigestsHeader(format=FORMAT, manifest=manifest or None)
    with tempfile.NamedTemporaryFile(prefix="lake-digests-", suffix=".jsonl") as spool:
        spool.write(head.model_dump_json(exclude_none=True).encode() + b"\n")
        for entry in entries:
            spool.write(entry.line())
        spool.flush()
        root.put_file(spool.name, root.path(dataset, DIGESTS))
    legacy = root.path(dataset, LEGACY)
    if root.fs().exists(legacy):
        root.fs().rm(legacy)


def spool_lines(path: str | os.PathLike[str]) -> Iterator[Entry]:
    """Entries back from a local spool file of `Entry.line` lines."""
    with open(path, "rb") as handle:
        for line in handle:
            yield Entry.parse(line)
