"""The catalogue's digest records and the publish journal: typed, versioned, and records
written by earlier versions still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lake.cubes.publish import JOURNAL, PublishJournal, read_journal
from lake.errors import TargetError
from lake.stac import digests
from lake.storage import Root


def test_document_digests_round_trip_with_their_format(tmp_path: Path) -> None:
    root = Root(str(tmp_path))
    assert digests.read_documents(root) == {}
    recorded = {"catalog.json": "ab" * 32, "occ/collection.json": ["cd" * 32, "ef" * 32]}
    digests.write_documents(root, recorded)
    assert json.loads((tmp_path / digests.DOCUMENTS).read_text())["format"] == (
        digests.DOCUMENTS_FORMAT
    )
    assert digests.read_documents(root) == recorded


def test_document_digests_of_earlier_builds_still_read(tmp_path: Path) -> None:
    (tmp_path / digests.DOCUMENTS).write_text(json.dumps({"catalog.json": "ab" * 32}))
    assert digests.read_documents(Root(str(tmp_path))) == {"catalog.json": "ab" * 32}


def test_document_digests_of_another_format_are_refused(tmp_path: Path) -> None:
    (tmp_path / digests.DOCUMENTS).write_text(json.dumps({"format": "lake-stac-documents/9"}))
    with pytest.raises(TargetError, match="not a record of document digests"):
        digests.read_documents(Root(str(tmp_path)))


def test_item_digests_header_carries_the_manifest_version(tmp_path: Path) -> None:
    root = Root(str(tmp_path))
    entries = [digests.Entry("occ.a", "ab" * 32), digests.Entry("occ.b", "cd" * 32, True)]
    digests.write(root, "occ", entries, manifest="v1")
    header: dict[str, str] = {}
    assert list(digests.read(root, "occ", header)) == entries
    assert header == {"format": digests.FORMAT, "manifest": "v1"}
    (tmp_path / "occ" / digests.DIGESTS).write_text('{"format": "lake-stac-digests/2"}\n')
    with pytest.raises(TargetError, match="not a digest record this version reads"):
        list(digests.read(root, "occ"))


def test_publish_journal_of_earlier_builds_still_reads(tmp_path: Path) -> None:
    root = Root(str(tmp_path))
    assert read_journal(root, "ds/maps.zarr") is None
    (tmp_path / "ds" / "maps.zarr").mkdir(parents=True)
    (tmp_path / "ds" / "maps.zarr" / JOURNAL).write_text('{"arrays": {"thetao": "ab"}}')
    journal = read_journal(root, "ds/maps.zarr")
    assert journal is not None and journal.arrays == {"thetao": "ab"}
    written = PublishJournal(arrays={"so": "cd"}).model_dump_json()
    assert json.loads(written) == {"format": "lake-publish-journal/1", "arrays": {"so": "cd"}}
