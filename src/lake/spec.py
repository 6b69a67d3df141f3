"""The build spec: one YAML file naming the sources, the target root and each dataset.

Validated with pydantic; every error names the file and the field, e.g.
``spec.yaml: datasets[0].cube.layouts[1]: Input should be 'maps' or 'timeseries'``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from lake.errors import SpecError
from lake.registry import CUBE_SOURCES, TABLE_SOURCES
from lake.sourcefiles import spdx_licensing
from lake.specparts import IDENT, Geometry, Incremental, Postgres
from lake.specparts import Model as _Model
from lake.storage import is_local, redact

_DATASET_ID = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")


def check_dataset_id(value: str) -> str:
    if not _DATASET_ID.match(value) or ".." in value:
        raise ValueError(
            f"{value!r} is not a safe path segment: use 1-128 lower-case letters, digits, "
            "'.', '_' or '-', starting and ending with a letter or digit"
        )
    return value


DatasetId = Annotated[str, AfterValidator(check_dataset_id)]
Layout = Literal["maps", "timeseries"]
LAYOUTS: tuple[Layout, ...] = ("maps", "timeseries")


class Chunking(_Model):
    """Optional overrides of the chunk planner (see ``lake.cubes.chunking``)."""

    inner_chunk_mb: float = Field(2.0, gt=0.05, le=64)
    """Target uncompressed size of a reader's unit (one inner chunk)."""
    shard_mb: float = Field(256.0, ge=1, le=2048)
    """Upper bound on the uncompressed size of a shard; also a worker task's working set."""
    timeseries_time: int | None = Field(None, ge=1)
    """Time steps per inner chunk of the time-series layout (default: planned)."""
    maps_time_per_shard: int | None = Field(None, ge=1)
    """Time steps per shard of the maps layout (default: planned)."""


class _Sourced(_Model):
    """A ``cube`` or ``table`` section: exactly one of its registered source keys is set."""

    _SOURCES: ClassVar[dict[str, str]]
    _SECTION: ClassVar[str]

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        names = type(self)._SOURCES
        given = [name for name in names if getattr(self, name, None) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one source of the {type(self)._SECTION}: one of "
                f"`{'`, `'.join(names)}`" + (f" (found {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        """The source key given (``netcdf``, ``postgres``, ...): see :mod:`lake.registry`."""
        return next(n for n in type(self)._SOURCES if getattr(self, n, None) is not None)


class CubeSource(_Sourced):
    """Gridded sources forming one cube along time (one source key: see :mod:`lake.registry`)."""

    _SOURCES: ClassVar[dict[str, str]] = CUBE_SOURCES
    _SECTION: ClassVar[str] = "cube"

    netcdf: str | list[str] | None = None
    """A glob, a list of paths/globs, or fsspec URLs (``s3://bucket/*.nc``)."""
    opendap: str | list[str] | None = None
    """OPeNDAP (DAP2/DAP4) endpoint URLs, one per source dataset (see
    :mod:`lake.cubes.opendap`)."""
    thredds: str | None = None
    """A THREDDS client catalogue URL (``.../catalog.xml``): its datasets matching ``match``."""
    match: str | None = None
    """With ``thredds``: a glob on each dataset's path below the catalogue (default ``*``)."""
    engine: Literal["netcdf4", "pydap"] | None = None
    """With ``opendap`` or ``thredds``: xarray's engine for DAP (default ``netcdf4``)."""
    timeout: float = Field(60.0, gt=0, le=3600)
    """With ``opendap`` or ``thredds``: seconds one request to the server may take."""
    retries: int = Field(4, ge=0, le=20)
    """With ``opendap`` or ``thredds``: how often a transient fault is retried."""
    layouts: list[Layout] | None = Field(None, min_length=1)
    """The copies to build (default: by the cube's shape, and on later builds the layouts
    already published: a station series only ``timeseries``, any other cube both)."""
    variables: list[str] | None = None
    """Keep only these data variables (default: all)."""
    time: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The time axis to build along, by its name in the files, when they have several
    (``TIME_HR`` of an OceanSITES mooring); variables along the others are left out."""
    storage_options: dict[str, Any] = Field(default_factory=dict)
    """fsspec options for reading the sources (never written to the lake)."""
    chunking: Chunking = Field(default_factory=Chunking)
    updates: Literal["refuse", "replace"] = "refuse"
    """What a source file holding published time steps does: ``refuse`` stops the build
    when it adds steps inside the published range (and skips it when it only repeats
    them); ``replace`` rewrites the steps a new version of a file covers (see
    :mod:`lake.cubes.steps`)."""

    @model_validator(mode="after")
    def _dap_options(self) -> Self:
        if self.match is not None and self.thredds is None:
            raise ValueError("`match` selects datasets of a `thredds` catalogue: give `thredds`")
        if self.opendap is None and self.thredds is None:
            given = [k for k in ("engine", "timeout", "retries") if k in self.model_fields_set]
            if given:
                raise ValueError(
                    f"`{'`, `'.join(given)}` apply to `opendap` and `thredds` sources; NetCDF "
                    "files are read with the reader their first bytes call for"
                )
        return self

    @field_validator("layouts")
    @classmethod
    def _unique_layouts(cls, value: list[Layout] | None) -> list[Layout] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each layout may appear once")
        return value

    @property
    def patterns(self) -> list[str]:
        """The ``netcdf`` globs, paths or URLs as a list."""
        if self.netcdf is None:
            return []
        return [self.netcdf] if isinstance(self.netcdf, str) else list(self.netcdf)


_IDENT = IDENT
_PARTITION = re.compile(
    rf"^(?:year\((?P<year>{_IDENT})\)|grid\((?P<grid>[0-9]+(?:\.[0-9]+)?)\)|(?P<column>{_IDENT}))$"
)
_GRID_SIZES = (0.5, 1, 2, 3, 5, 6, 9, 10, 15, 18, 30, 45, 90)


class TableSource(_Sourced):
    """Records written as hive-partitioned GeoParquet (one source key: see :mod:`lake.registry`)."""

    _SOURCES: ClassVar[dict[str, str]] = TABLE_SOURCES
    _SECTION: ClassVar[str] = "table"
    _rows: str = PrivateAttr(default="")

    postgres: Postgres | None = None
    netcdf: str | list[str] | None = None
    """CF discrete-sampling-geometry files (Argo, CTD, gliders, moorings, ragged arrays): a
    glob, a list of paths/globs, or fsspec URLs; one row per observation."""
    dwca: str | list[str] | None = None
    """Darwin Core archives (IPT exports): a path, glob or URL of each ``.zip`` (or unpacked
    folder); one row per occurrence (or event, for an event core alone)."""
    storage_options: dict[str, Any] = Field(default_factory=dict)
    """fsspec options for reading file sources (never written to the lake)."""
    geometry: Geometry = Field(default_factory=Geometry)
    """The points of each row: required for PostgreSQL; file sources give their own."""
    partition_by: list[str] = Field(default_factory=list, max_length=3)
    """``year(col)``, a column name, or ``grid(D)`` (a D-degree cell); nested in this order.
    Default for file sources: ``year(time)``; for PostgreSQL: none."""
    time: str | None = Field(None, pattern=rf"^{_IDENT}$")
    """The column giving each row's time (default: the column of ``year(...)``)."""
    incremental: Incremental | None = None
    file_mb: float = Field(128.0, gt=0, le=1024)
    """Target size of a Parquet file (the rows of one file are sorted in memory)."""
    row_group_rows: int = Field(100_000, ge=1_000, le=1_000_000)
    staging_mb: float = Field(256.0, gt=0, le=4096)
    """Rows a read task buffers before staging them (with ``file_mb``: a worker's memory)."""

    @model_validator(mode="after")
    def _source_geometry(self) -> Self:
        if self.kind == "postgres":
            if not self.geometry.given:
                raise ValueError("a PostgreSQL table needs `geometry`: `lon`/`lat` or `column`")
            if self.incremental is not None and self.incremental.column is None:
                raise ValueError("`incremental` of a PostgreSQL table needs `column`")
            return self
        if self.geometry.given:
            raise ValueError(
                f"a `{self.kind}` source gives each row's point itself: give `geometry` only "
                "`invalid`, not columns"
            )
        if self.incremental is not None and (self.incremental.column or self.incremental.key):
            raise ValueError(
                f"a `{self.kind}` source is incremental by file (new, changed and removed files): "
                "give `incremental: {}` without `column` or `key`"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _file_partitions(cls, data: Any) -> Any:
        """File sources are partitioned by the year of their rows' time unless told."""
        files = isinstance(data, dict) and any(data.get(k) is not None for k in ("netcdf", "dwca"))
        if files and "partition_by" not in data:
            return {**data, "partition_by": ["year(time)"]}
        return data

    @property
    def rows(self) -> str:
        """The rows of the source this table holds: ``""``, or a second table's name."""
        return self._rows

    @property
    def patterns(self) -> list[str]:
        """The ``netcdf`` or ``dwca`` globs, paths or URLs as a list."""
        given = self.netcdf if self.netcdf is not None else self.dwca
        if given is None:
            return []
        return [given] if isinstance(given, str) else list(given)

    @field_validator("partition_by")
    @classmethod
    def _partitions(cls, value: list[str]) -> list[str]:
        for item in value:
            match = _PARTITION.match(item)
            if not match:
                raise ValueError(
                    f"{item!r} is not a partition: use `year(column)`, a column name, "
                    "or `grid(degrees)`"
                )
            if match["grid"] and float(match["grid"]) not in _GRID_SIZES:
                sizes = ", ".join(f"{g:g}" for g in _GRID_SIZES)
                raise ValueError(f"grid cells must divide 180 degrees evenly: use one of {sizes}")
        if len(set(value)) != len(value):
            raise ValueError("each partition may appear once")
        return value

    @property
    def partitions(self) -> list[tuple[str, str]]:
        """``(kind, argument)`` of each partition level: year/column/grid."""
        out = []
        for item in self.partition_by:
            match = _PARTITION.match(item)
            assert match is not None
            kind = next(k for k in ("year", "grid", "column") if match[k])
            out.append((kind, match[kind]))
        return out

    @property
    def time_column(self) -> str | None:
        if self.time:
            return self.time
        return next((arg for kind, arg in self.partitions if kind == "year"), None)


_DOI = re.compile(r"^10\.\d{4,9}/[^\s]+$")


class Provider(_Model):
    name: str = Field(min_length=1)
    roles: list[Literal["licensor", "producer", "processor", "host"]] = Field(default_factory=list)
    url: str | None = None
    description: str | None = None


class Metadata(_Model):
    """What the catalogue says about a dataset (STAC Collection fields)."""

    title: str | None = None
    description: str | None = None
    keywords: list[str] = Field(default_factory=list)
    license: str | None = None
    """An SPDX licence id or expression (``CC-BY-4.0``), or ``other`` with ``license_url``."""
    license_url: str | None = None
    providers: list[Provider] = Field(default_factory=list)
    doi: str | None = None
    """A DOI name such as ``10.14284/123`` (no ``https://doi.org/`` prefix)."""
    citation: str | None = None

    @field_validator("doi")
    @classmethod
    def _doi(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.removeprefix("https://doi.org/").removeprefix("doi:")
            if not _DOI.match(value):
                raise ValueError(f"{value!r} is not a DOI: use the form 10.NNNN/suffix")
        return value

    @field_validator("license")
    @classmethod
    def _license(cls, value: str | None) -> str | None:
        if value is None or value == "other":
            return value
        problems = spdx_licensing().validate(value).errors
        if problems:
            raise ValueError(
                f"{value!r} is not an SPDX licence id or expression ({'; '.join(problems)}): "
                "use an id from https://spdx.org/licenses/ such as CC-BY-4.0, or `other` "
                "with `license_url`"
            )
        return value


class Dataset(_Model):
    id: DatasetId
    cube: CubeSource | None = None
    table: TableSource | None = None
    metadata: Metadata = Field(default_factory=Metadata)
    """Descriptive metadata (title, licence, providers, DOI, keywords) for the catalogue."""

    @model_validator(mode="after")
    def _one_kind(self) -> Dataset:
        if (self.cube is None) == (self.table is None):
            raise ValueError("a dataset has exactly one of `cube` and `table`")
        return self

    _axis_siblings: tuple[str, ...] = PrivateAttr(default=())
    _part_of: str | None = PrivateAttr(default=None)

    @property
    def kind(self) -> Literal["cube", "table"]:
        """What the dataset becomes: a Zarr ``cube`` or a GeoParquet ``table``."""
        return "cube" if self.cube is not None else "table"

    @property
    def axis_siblings(self) -> tuple[str, ...]:
        """The cubes along the other time axes of the files (see ``per_time_axis``)."""
        return self._axis_siblings

    @property
    def part_of(self) -> str | None:
        """The dataset whose collection holds this second table (``<id>/measurements``)."""
        return self._part_of


class Spec(_Model):
    root: str
    """Target root: a local folder or any fsspec URL (``s3://bucket/prefix``)."""
    title: str = "Marine data lake"
    description: str = ""
    public_url: str | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)
    """fsspec options for the target root, e.g. ``{endpoint_url: ...}``; never published."""
    datasets: list[Dataset] = Field(min_length=1)
    _source: str = PrivateAttr(default="spec")
    """Where the spec was read from, for messages."""

    @model_validator(mode="after")
    def _unique_ids(self) -> Spec:
        seen: dict[str, str] = {}
        for ds in self.datasets:
            key = ds.id.lower()
            if key in seen:
                raise ValueError(f"dataset id {ds.id!r} is used twice")
            seen[key] = ds.id
        return self

    def check_catalogue(self, source: str = "spec", described_by_source: bool = True) -> None:
        """Every dataset carries what a catalogue needs (called before a build starts).
        ``described_by_source=False`` leaves out the tables whose files describe themselves
        (NetCDF attributes, EML), checked again once they have been read."""
        for i, ds in enumerate(self.datasets):
            if not described_by_source and ds.table is not None and ds.table.kind != "postgres":
                continue
            meta = ds.metadata
            if meta.license is None:
                raise SpecError(
                    f"{source}: datasets[{i}].metadata.license",
                    f"dataset {ds.id} has no licence, and data without one cannot be reused",
                    "give an SPDX id such as CC-BY-4.0 or CC0-1.0 (see https://spdx.org/licenses/)",
                )
            if meta.license == "other" and not meta.license_url:
                raise SpecError(
                    f"{source}: datasets[{i}].metadata.license_url",
                    "licence `other` needs the address of the licence text",
                    "give `license_url`, or an SPDX id as `license`",
                )

    def dataset(self, dataset_id: str) -> Dataset:
        for ds in self.datasets:
            if ds.id == dataset_id:
                return ds
        known = ", ".join(d.id for d in self.datasets)
        raise SpecError(f"--only {dataset_id}", "no dataset has this id", f"use one of: {known}")


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _resolve(path: str, base: Path) -> str:
    if is_local(path) and not os.path.isabs(path.removeprefix("file://")):
        return str((base / path.removeprefix("file://")).resolve())
    return path


def parse_spec(data: Any, source: str, base_dir: Path) -> Spec:
    """Validate a parsed YAML document; relative local paths are taken from ``base_dir``."""
    if not isinstance(data, dict):
        raise SpecError(source, "the spec must be a YAML mapping", "see examples/ for the shape")
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        lines = [f"{_location(e['loc'])}: {redact(e['msg'])}" for e in exc.errors()]
        raise SpecError(
            source,
            "invalid spec: " + "; ".join(lines),
            "correct the field(s) named above (see examples/ for a valid spec)",
        ) from None
    datasets = [
        ds.model_copy(
            update={
                "cube": ds.cube.model_copy(
                    update={"netcdf": [_resolve(p, base_dir) for p in ds.cube.patterns]}
                )
            }
        )
        if ds.cube is not None and ds.cube.netcdf is not None
        else ds
        for ds in spec.datasets
    ]
    return spec.model_copy(update={"root": _resolve(spec.root, base_dir), "datasets": datasets})


def load_spec(path: str | Path) -> Spec:
    """Read and validate the spec file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(
            str(path), f"cannot be read ({exc.strerror or exc})", "check the path to the spec"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(
            str(path), f"is not valid YAML{where}", "fix the YAML syntax there"
        ) from None
    spec = parse_spec(data, str(path), path.parent.resolve())
    spec._source = str(path)
    return spec
