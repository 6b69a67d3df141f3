from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lake.errors import SpecError
from lake.spec import load_spec, parse_spec


def test_relative_paths_are_taken_from_the_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(
        "root: ./lake\ndatasets:\n  - id: a\n    cube: {netcdf: 'data/*.nc'}\n"
    )
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.root == str(tmp_path / "lake")
    assert spec.datasets[0].cube.netcdf == [str(tmp_path / "data/*.nc")]
    assert spec.datasets[0].cube.layouts is None  # by the cube's shape


def test_remote_urls_are_kept(tmp_path: Path) -> None:
    spec = parse_spec(
        {"root": "s3://b/lake", "datasets": [{"id": "a", "cube": {"netcdf": "s3://b/*.nc"}}]},
        "x.yaml",
        tmp_path,
    )
    assert spec.root == "s3://b/lake"
    assert spec.datasets[0].cube.netcdf == ["s3://b/*.nc"]


@pytest.mark.parametrize(
    ("dataset_id", "fragment"),
    [("../x", "not a safe path segment"), ("with space", "not a safe path segment"),
     ("Upper", "not a safe path segment")],
)  # fmt: skip
def test_unsafe_dataset_ids(tmp_path: Path, dataset_id: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({"root": "x", "datasets": [{"id": dataset_id, "cube": {"netcdf": "a"}}]},
                   "s.yaml", tmp_path)  # fmt: skip
    assert "s.yaml" in str(info.value) and "datasets[0].id" in str(info.value)
    assert fragment in str(info.value)


def test_duplicate_ids_and_unknown_fields(tmp_path: Path) -> None:
    data = {
        "root": "x",
        "datasets": [
            {"id": "a", "cube": {"netcdf": "a"}},
            {"id": "a", "cube": {"netcdf": "b", "colour": 1}},
        ],
    }
    with pytest.raises(SpecError) as info:
        parse_spec(data, "s.yaml", tmp_path)
    assert "datasets[1].cube.colour" in str(info.value)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("root: x\ndatasets: [\n")
    with pytest.raises(SpecError, match=r"s\.yaml: is not valid YAML at line"):
        load_spec(tmp_path / "s.yaml")


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot be read"):
        load_spec(tmp_path / "nope.yaml")


def test_example_specs_are_valid() -> None:
    examples = Path(__file__).resolve().parents[1] / "examples"
    for path in sorted(examples.glob("*.yaml")):
        assert load_spec(path).datasets


TABLE = {"postgres": {"table": "occ"}, "geometry": {"lon": "x", "lat": "y"}}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"postgres": {"table": "occ", "query": "select 1"}},
         "give exactly one of `table` and `query`"),
        ({"postgres": {"table": "occ; drop table x"}}, "datasets[0].table.postgres.table"),
        ({"postgres": {"table": "occ", "dsn_env": "postgresql://u:pw@h/db"}},
         "datasets[0].table.postgres.dsn_env"),
        ({"geometry": {"lon": "x"}}, "give both `lon` and `lat`"),
        ({"geometry": {"lon": "x", "lat": "y", "column": "g"}}, "give either"),
        ({"partition_by": ["month(t)"]}, "is not a partition"),
        ({"partition_by": ["grid(7)"]}, "grid cells must divide 180 degrees"),
        ({"incremental": {"column": "m", "key": []}}, "needs at least one column"),
    ],
    ids=["table-and-query", "unsafe-table", "dsn-in-file", "lon-only", "two-geometries",
         "unknown-partition", "odd-grid", "empty-key"],
)  # fmt: skip
def test_invalid_table_specs(tmp_path: Path, change: dict[str, Any], fragment: str) -> None:
    data = {"root": "lake", "datasets": [{"id": "t", "table": {**TABLE, **change}}]}
    with pytest.raises(SpecError) as info:
        parse_spec(data, "spec.yaml", tmp_path)
    assert fragment in str(info.value)
    assert "pw" not in str(info.value).replace("postgres", "")


def test_dataset_needs_one_kind(tmp_path: Path) -> None:
    data = {"root": "lake", "datasets": [{"id": "t"}]}
    with pytest.raises(SpecError, match="exactly one of `cube` and `table`"):
        parse_spec(data, "spec.yaml", tmp_path)
