"""The storage conformance suite: every `Root` operation, on local disk and on S3.

Each backend is a short subclass of `RootContract` that supplies a fresh root; every test of
the contract runs on each of them (as zarr-python's store tests do).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from lake.errors import TargetError
from lake.storage import Root, is_local, redact, secret_values


class RootContract:
    """What every root does, whatever the storage behind it."""

    @pytest.fixture
    def root(self) -> Root:
        raise NotImplementedError

    def test_path_joins_below_the_root(self, root: Root) -> None:
        assert root.path("a", "/b/", "c.json").endswith("/a/b/c.json")
        assert root.path() == root.path("")

    def test_put_then_read_json(self, root: Root) -> None:
        root.put(root.path("ds", "doc.json"), json.dumps({"a": [1, 2]}).encode())
        assert root.read_json("ds", "doc.json") == {"a": [1, 2]}
        assert root.read_json("ds/doc.json") == {"a": [1, 2]}

    def test_read_json_of_a_missing_object_is_file_not_found(self, root: Root) -> None:
        with pytest.raises(FileNotFoundError):
            root.read_json("nothing", "here.json")

    def test_put_replaces_whole_and_leaves_no_temporary_object(self, root: Root) -> None:
        path = root.path("ds", "object.bin")
        root.put(path, b"first version, longer than the second")
        root.put(path, b"second")
        fs = root.fs()
        assert fs.cat_file(path) == b"second"
        assert [p.rsplit("/", 1)[-1] for p in fs.find(root.path("ds"))] == ["object.bin"]

    def test_open_write_makes_what_it_needs(self, root: Root) -> None:
        path = root.path("ds", "deep", "er", "file.bin")
        with root.open_write(path) as handle:
            handle.write(b"x" * 1000)
        assert root.fs().size(path) == 1000

    def test_put_file_uploads_a_local_file(self, root: Root, tmp_path: Path) -> None:
        local = tmp_path / "spool.jsonl"
        local.write_bytes(b"line\n" * 10_000)
        target = root.path("ds", "uploaded.jsonl")
        root.put_file(str(local), target)
        assert root.fs().cat_file(target) == local.read_bytes()
        root.put_file(str(local), target)  # again, over it
        assert root.fs().size(target) == local.stat().st_size

    def test_put_many_writes_every_object(self, root: Root) -> None:
        objects = {root.path("ds", "many", f"{i}.json"): str(i).encode() for i in range(25)}
        root.put_many(objects)
        root.put_many({})
        assert {p: root.fs().cat_file(p) for p in objects} == objects

    def test_check_writable_leaves_nothing(self, root: Root) -> None:
        root.check_writable()
        fs = root.fs()
        leftovers = [p for p in fs.find(root.path()) if ".lake-write-probe" in p]
        assert leftovers == []

    def test_remove_partials_removes_only_partial_files(self, root: Root) -> None:
        kept = root.path("ds", "kept.json")
        root.put(kept, b"{}")
        partial = root.path("ds", "sub", "kept.json.0123.partial")
        if root.local:
            os.makedirs(os.path.dirname(partial), exist_ok=True)
            Path(partial).write_bytes(b"torn")
        removed = root.remove_partials("ds")
        assert removed == ([partial] if root.local else [])
        assert root.fs().exists(kept)

    def test_zarr_store_round_trip(self, root: Root) -> None:
        values = np.arange(120, dtype="int16").reshape(10, 12)
        array = zarr.create_array(
            root.zarr_store("ds", "cube.zarr"), name="v", shape=values.shape,
            chunks=(5, 6), dtype=values.dtype, zarr_format=3,
        )  # fmt: skip
        array[:] = values
        opened = zarr.open_array(root.zarr_store("ds", "cube.zarr", read_only=True), path="v")
        assert np.array_equal(opened[:], values)
        with pytest.raises(Exception):  # noqa: B017 - read-only stores refuse writes
            opened[0, 0] = 1

    def test_display_hides_credentials(self, root: Root) -> None:
        assert "testing-secret" not in root.display
        assert "testing-secret" not in repr(root)


class TestLocalRoot(RootContract):
    @pytest.fixture
    def root(self, tmp_path: Path) -> Root:
        return Root(str(tmp_path / "lake"))

    def test_local_roots_are_absolute_paths(self, tmp_path: Path, monkeypatch: Any) -> None:
        monkeypatch.chdir(tmp_path)
        root = Root("./relative/lake/")
        assert root.local and root.url == str(tmp_path / "relative" / "lake")
        assert Root(f"file://{tmp_path}/x").url == str(tmp_path / "x")

    def test_unwritable_root_is_a_target_error(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("not a folder")
        with pytest.raises(TargetError, match="cannot be written"):
            Root(str(tmp_path / "file" / "lake")).check_writable()


@pytest.mark.s3
class TestS3Root(RootContract):
    @pytest.fixture
    def root(self, s3_endpoint: str, bucket: str) -> Root:
        options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing-secret"}
        return Root(f"s3://{bucket}/lake", options)

    def test_s3_roots_retry_transient_errors(self, root: Root) -> None:
        assert not root.local
        assert root.storage_options["config_kwargs"]["retries"]["mode"] == "standard"

    def test_missing_bucket_is_a_target_error(self, s3_endpoint: str) -> None:
        root = Root("s3://no-such-bucket-here/lake", {"endpoint_url": s3_endpoint})
        with pytest.raises(TargetError, match="bucket exists") as info:
            root.check_writable()
        assert "testing-secret" not in str(info.value)


def test_redact_removes_user_info_and_secrets() -> None:
    text = "s3://AKIA:pw@host/bucket and postgresql://u:hunter22@db/x token=abcd1234"
    out = redact(text, ["abcd1234"])
    assert "pw@" not in out and "hunter22" not in out and "abcd1234" not in out
    assert redact("short", ["abc"]) == "short"  # too short to strip safely


def test_secret_values_finds_nested_credentials() -> None:
    options = {"key": "AKIA", "client_kwargs": {"aws_secret_access_key": "s3cr3t"},
               "endpoint_url": "http://x", "anon": False}  # fmt: skip
    assert sorted(secret_values(options)) == ["AKIA", "s3cr3t"]


def test_is_local() -> None:
    assert is_local("lake") and is_local("/abs/lake") and is_local("file:///x")
    assert not is_local("s3://b/lake") and not is_local("https://h/lake")
