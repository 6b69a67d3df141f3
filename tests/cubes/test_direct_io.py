"""Shards below a local root are written and read with direct I/O where the file system
takes it: the same bytes as through the page cache, and nothing is asked of a store or a
file system that cannot."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import zarr

from lake.cubes.blocks import direct_io, fast_codecs
from lake.storage import Root


@pytest.fixture(autouse=True)
def _fresh_probe() -> None:
    direct_io.cache_clear()


def _shards(path: Path, config: dict[str, object], data: np.ndarray) -> dict[str, bytes]:
    with zarr.config.set(config):
        array = zarr.create_array(
            str(path), shape=data.shape, chunks=(10, 100), shards=(50, 1000), dtype="f4",
            compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=1),
        )  # fmt: skip
        array[:] = data
        assert np.array_equal(zarr.open_array(str(path))[:], data)
    return {p.name + p.parent.name: p.read_bytes() for p in (path / "c").rglob("*") if p.is_file()}


def test_direct_shards_hold_the_same_bytes(tmp_path: Path) -> None:
    if not direct_io(str(tmp_path)):
        pytest.skip(f"the file system of {tmp_path} does not take O_DIRECT")
    assert os.listdir(tmp_path) == []  # the probe file is gone
    config = fast_codecs(Root(str(tmp_path)))
    assert config["codec_pipeline.direct_io"] is True
    data = np.random.default_rng(3).normal(size=(100, 1000)).astype("f4")
    direct = _shards(tmp_path / "direct.zarr", config, data)
    buffered = _shards(tmp_path / "buffered.zarr", fast_codecs(), data)
    assert direct == buffered and len(direct) == 2


def test_no_direct_io_where_it_cannot_be_had(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "codec_pipeline.direct_io" not in fast_codecs()
    assert "codec_pipeline.direct_io" not in fast_codecs(Root("s3://bucket/lake"))
    assert not direct_io(str(tmp_path / "missing"))
    monkeypatch.delattr(os, "O_DIRECT", raising=False)
    direct_io.cache_clear()
    assert not direct_io(str(tmp_path))
    assert "codec_pipeline.direct_io" not in fast_codecs(Root(str(tmp_path)))
