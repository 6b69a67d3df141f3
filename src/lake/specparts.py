"""Parts of the build spec shared by its sections: the base model, and the pieces of a
table source (a PostgreSQL relation, the geometry, incremental builds). :mod:`lake.spec`
re-exports them; they live here to keep each module of the spec readable."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IDENT = r"[A-Za-z_][A-Za-z0-9_$]*"
"""An SQL identifier as the spec accepts it (no quoting)."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Postgres(Model):
    """A PostgreSQL table or read-only query."""

    dsn_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name of the environment variable holding the libpq URI or keyword DSN (never the DSN
    itself). Default: libpq's own environment (``PGHOST``, ``PGUSER``, ...) and ``~/.pgpass``."""
    table: str | None = Field(None, pattern=rf"^(?:{IDENT}\.)?{IDENT}$")
    """``schema.table`` or ``table``: the whole table, read in parallel ctid ranges."""
    query: str | None = None
    """One read-only SELECT; read in parallel only with ``split_by``."""
    split_by: str | None = Field(None, pattern=rf"^{IDENT}$")
    """An integer, date or timestamp column whose value ranges split the read into parts."""
    parts: int | None = Field(None, ge=1, le=512)
    """Number of parallel reads (default: one per 128 MB of table, or 4 per worker)."""

    @model_validator(mode="after")
    def _one_source(self) -> Postgres:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` and `query`")
        if self.query is not None and not self.query.strip().rstrip(";").strip():
            raise ValueError("`query` is empty")
        return self


class Geometry(Model):
    """Where the geometry comes from: lon/lat columns or a PostGIS column (a NetCDF or
    Darwin Core source takes its points from the data: only ``invalid`` applies)."""

    lon: str | None = Field(None, pattern=rf"^{IDENT}$")
    lat: str | None = Field(None, pattern=rf"^{IDENT}$")
    column: str | None = Field(None, pattern=rf"^{IDENT}$")
    """A PostGIS ``geometry`` or ``geography`` column."""
    invalid: Literal["keep", "drop"] = "keep"
    """Rows without valid coordinates: kept with a null geometry, or dropped (both counted)."""

    @model_validator(mode="after")
    def _one_kind(self) -> Geometry:
        pair = self.lon is not None, self.lat is not None
        if pair[0] != pair[1]:
            raise ValueError("give both `lon` and `lat`")
        if pair[0] and self.column is not None:
            raise ValueError("give either `lon` and `lat`, or `column`")
        return self

    @property
    def given(self) -> bool:
        """Whether the spec names the geometry's columns."""
        return self.lon is not None or self.column is not None


class Incremental(Model):
    """Bring only rows whose watermark column grew since the last build."""

    column: str | None = Field(None, pattern=rf"^{IDENT}$")
    """A modification timestamp or an increasing id (a PostgreSQL source; file sources
    compare each file's listing instead)."""
    key: list[str] | None = None
    """Columns identifying a row, so that an updated row replaces its previous version.
    Default: the table's primary key; required for a query."""
    deletes: Literal["remove", "ignore"] = "remove"
    """Rows gone from the source: removed from the table at the next build (a PostgreSQL
    source's deleted rows, found by key; a file source's removed files), or kept."""

    @field_validator("key")
    @classmethod
    def _key_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("`key` needs at least one column")
            for name in value:
                if not re.match(rf"^{IDENT}$", name):
                    raise ValueError(f"{name!r} is not a column name")
        return value
