"""The PostgreSQL table source: a read-only session, one exported snapshot, parts as Arrow.

The coordinator opens one session with psycopg, exports its snapshot (as ``pg_dump -j``
does) and keeps it open while workers read. Each worker opens its own ADBC connection
(kept from one part to the next until the reads end), joins that snapshot for each part
(``SET TRANSACTION SNAPSHOT``) and streams it with binary
``COPY`` into Arrow record batches: no per-row Python objects, memory bounded by the batch
(see :mod:`lake.tables.pgconnect`). Registered as the ``postgres`` table source.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from lake.errors import SourceError, SpecError
from lake.tables.pgconnect import (
    APPLICATION_NAME,
    Part,
    PartQuery,
    Secret,
    read_part,
    resolve_dsn,
    source_error,
)
from lake.tables.source import SourcePlan

if TYPE_CHECKING:
    import psycopg

    from lake.spec import TableSource
    from lake.specparts import Postgres

# Rows of heap per parallel part: big enough that a part's query costs far more than its
# connection, small enough that parts balance over the workers.
PART_BYTES = 128 * 2**20
_NUMBERS = {"int2", "int4", "int8", "float4", "float8", "numeric"}
_TIMES = {"date", "timestamp", "timestamptz"}
_PARTITION_VALUES = {"int2", "int4", "int8", "text", "varchar", "bpchar", "bool", "date"}
__all__ = ["Part", "PostgresReader", "Secret", "Session", "read_part"]


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str
    """PostgreSQL type name (``int4``, ``numeric``, ``geometry``, ``_text`` for arrays)."""
    precision: int | None = None
    scale: int | None = None


@dataclass(frozen=True)
class Described:
    """What the source returns and how it can be split."""

    label: str
    """``table public.occurrence`` or ``query`` (for messages; never the DSN)."""
    select: str
    """The relation or parenthesised query to select from, identifiers quoted."""
    columns: list[Column]
    primary_key: list[str]
    heap_bytes: int
    heap_pages: int
    ctid_split: bool
    """Whether the source is a plain table on a server with TID range scans (14+)."""

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_relation(name: str) -> str:
    return ".".join(_quote_name(p) for p in name.split("."))


class Session:
    """The coordinator's read-only, repeatable-read session and its exported snapshot."""

    def __init__(self, secret: Secret, label: str) -> None:
        self.secret = secret
        self.label = label
        self.conn: psycopg.Connection[Any] | None = None
        self.snapshot: str = ""
        self.server_version = 0

    def __enter__(self) -> Session:
        import psycopg

        try:
            self.conn = psycopg.connect(
                self.secret.value,
                autocommit=True,
                connect_timeout=15,
                application_name=APPLICATION_NAME,
            )
            self.server_version = self.conn.info.server_version
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            self.snapshot = str(row[0])
        except psycopg.Error as exc:
            self.close()
            raise source_error(self.label, exc, self.secret) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def fetch(self, query: Any, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        import psycopg

        assert self.conn is not None
        try:
            return self.conn.execute(query, params).fetchall()
        except psycopg.Error as exc:
            raise source_error(self.label, exc, self.secret) from None

    def as_sql(self, composed: Any) -> str:
        assert self.conn is not None
        return str(composed.as_string(self.conn))

    def describe(self, pg: Postgres) -> Described:
        """Columns and types of the source, its primary key, and how it can be split."""
        import psycopg

        assert self.conn is not None
        if pg.table is not None:
            relation = quote_relation(pg.table)
            label = f"table {pg.table}"
            rows = self.fetch(
                "SELECT c.oid, c.relkind, pg_relation_size(c.oid), "
                "current_setting('block_size')::int FROM pg_class c "
                "WHERE c.oid = to_regclass(%s)",
                [relation],
            )
            if not rows:
                raise SourceError(
                    f"table {pg.table}",
                    "does not exist (or the build's user cannot see it)",
                    "check the schema and table name; names are quoted, so case-sensitive",
                )
            oid, relkind, size, block = rows[0]
            pk = [
                r[0]
                for r in self.fetch(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                    "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                    "WHERE i.indrelid = %s AND i.indisprimary "
                    "ORDER BY array_position(i.indkey, a.attnum)",
                    [oid],
                )
            ]
            select = relation
            ctid = relkind in ("r", "m") and self.server_version >= 140000
            pages = math.ceil(size / block) if block else 0
        else:
            assert pg.query is not None
            label = "query"
            select = "(" + pg.query.strip().rstrip(";").strip() + ")"
            pk, size, pages, ctid = [], 0, 0, False
        try:
            cur = self.conn.execute(f"SELECT * FROM {select} AS q LIMIT 0")
        except psycopg.Error as exc:
            raise source_error(f"{label} in the spec", exc, self.secret) from None
        description = cur.description or []
        oids = sorted({d.type_code for d in description})
        names = dict(self.fetch("SELECT oid, typname FROM pg_type WHERE oid = ANY(%s)", [oids]))
        columns = [
            Column(d.name, str(names.get(d.type_code, "unknown")), d.precision, d.scale)
            for d in description
        ]
        seen: set[str] = set()
        for column in columns:
            if column.name in seen:
                raise SourceError(
                    label,
                    f"returns the column name {column.name!r} twice",
                    "give each selected column its own name (AS ...)",
                )
            seen.add(column.name)
        return Described(label, select, columns, pk, int(size), pages, ctid)

    def plan_parts(
        self,
        described: Described,
        table: TableSource,
        watermark: Any,
        workers: int,
        columns: list[str] | None = None,
    ) -> list[Part]:
        """Split the read into parts; all see this session's snapshot. ``columns``: only
        those (every row's key, to find deleted rows), else every column."""
        from psycopg import sql

        where: list[sql.Composable] = []
        if table.incremental is not None and table.incremental.column and watermark is not None:
            where.append(
                sql.SQL("q.{} > {}").format(
                    sql.Identifier(table.incremental.column), sql.Literal(watermark)
                )
            )
        selected = (
            sql.SQL("q.*")
            if columns is None
            else sql.SQL(", ").join(sql.SQL("q.{}").format(sql.Identifier(c)) for c in columns)
        )
        base = sql.SQL("SELECT {} FROM {} AS q").format(selected, sql.SQL(described.select))
        assert table.postgres is not None
        wanted = table.postgres.parts

        def compose(extra: list[sql.Composable]) -> str:
            clauses = where + extra
            if not clauses:
                return self.as_sql(base)
            return self.as_sql(base + sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses))

        split = table.postgres.split_by
        if split is not None:
            return self._split_by_value(described, split, where, base, wanted, workers, compose)
        if not described.ctid_split:
            return [Part(0, compose([]))]
        n = wanted or _balanced(math.ceil(described.heap_bytes / PART_BYTES), workers)
        if n == 1 or described.heap_pages < 2:
            return [Part(0, compose([]))]
        n = min(n, described.heap_pages)
        bounds = [described.heap_pages * i // n for i in range(n + 1)]
        parts = []
        for i in range(n):
            extra: list[sql.Composable] = []
            if i > 0:
                extra.append(sql.SQL("q.ctid >= {}::tid").format(sql.Literal(f"({bounds[i]},0)")))
            if i < n - 1:
                extra.append(
                    sql.SQL("q.ctid < {}::tid").format(sql.Literal(f"({bounds[i + 1]},0)"))
                )
            parts.append(Part(i, compose(extra)))
        return parts

    def _split_by_value(
        self,
        described: Described,
        column: str,
        where: list[Any],
        base: Any,
        wanted: int | None,
        workers: int,
        compose: Any,
    ) -> list[Part]:
        from psycopg import sql

        ident = sql.Identifier(column)
        query = sql.SQL("SELECT min(q.{c}), max(q.{c}) FROM {s} AS q").format(
            c=ident, s=sql.SQL(described.select)
        )
        if where:
            query = query + sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        low, high = self.fetch(query)[0]
        if low is None:
            return [Part(0, compose([]))]
        if not isinstance(low, (int, date, datetime)) or isinstance(low, bool):
            raise SpecError(
                f"{described.label}: split_by {column}",
                f"is of type {type(low).__name__}, which cannot be split into ranges",
                "name an integer, date or timestamp column",
            )
        default = (
            math.ceil(described.heap_bytes / PART_BYTES) if described.heap_bytes else 4 * workers
        )
        n = max(1, min(512, wanted or _balanced(default, workers)))
        edges = _edges(low, high, n)
        parts = []
        for i in range(len(edges) - 1):
            extra: list[Any] = []
            if i > 0:
                extra.append(sql.SQL("q.{} >= {}").format(ident, sql.Literal(edges[i])))
            if i < len(edges) - 2:
                extra.append(sql.SQL("q.{} < {}").format(ident, sql.Literal(edges[i + 1])))
            if i == 0 and len(edges) > 2:
                extra = [sql.SQL("(q.{} < {} OR q.{} IS NULL)").format(
                    ident, sql.Literal(edges[1]), ident
                )]  # fmt: skip
            parts.append(Part(i, compose(extra)))
        return parts


def _balanced(n: int, workers: int) -> int:
    """``n`` parts rounded up to a multiple of the workers (at most 512), so that the last
    round of reads keeps every worker busy."""
    if n > workers:
        n = -(-n // workers) * workers
    return max(1, min(512, n))


def _edges(low: Any, high: Any, n: int) -> list[Any]:
    """``n + 1`` increasing edges from ``low`` to ``high`` (duplicates removed)."""
    if isinstance(low, int) or not isinstance(low, datetime):
        # Integers and dates: whole steps.
        raw = [low + (high - low) * i // n for i in range(n + 1)]
    else:
        raw = [low + (high - low) * i / n for i in range(n + 1)]
    out = [raw[0]]
    for edge in raw[1:]:
        if edge > out[-1]:
            out.append(edge)
    if len(out) == 1:
        out.append(out[0])
    return out


def check_columns(described: Described, table: TableSource, subject: str) -> None:
    """Every column the spec names exists and has a type the role needs."""
    names = [c.name for c in described.columns]
    known = ", ".join(names)

    def need(column: str, field_name: str, types: set[str] | None, what: str) -> None:
        found = described.column(column)
        if found is None:
            raise SourceError(
                f"{described.label}",
                f"has no column {column!r} (named by {subject}.{field_name})",
                f"name one of its columns: {known}",
            )
        if types is not None and found.type_name not in types:
            raise SpecError(
                f"{subject}.{field_name}",
                f"column {column!r} is of type {found.type_name}, not {what}",
                f"name a {what} column",
            )

    geo = table.geometry
    if geo.column is not None:
        need(geo.column, "geometry.column", {"geometry", "geography"}, "PostGIS geometry")
    else:
        assert geo.lon is not None and geo.lat is not None
        need(geo.lon, "geometry.lon", _NUMBERS, "number")
        need(geo.lat, "geometry.lat", _NUMBERS, "number")
        for reserved in ("geometry", "bbox"):
            if reserved in names:
                raise SpecError(
                    f"{subject}.geometry",
                    f"the source already has a column {reserved!r}, which the lake adds",
                    f"rename it in a query ({reserved} AS source_{reserved})",
                )
    for kind, arg in table.partitions:
        if kind == "year":
            need(arg, "partition_by", _TIMES, "date or timestamp")
        elif kind == "column":
            need(arg, "partition_by", _PARTITION_VALUES, "integer, text, boolean or date")
    if table.time:
        need(table.time, "time", _TIMES, "date or timestamp")
    if table.incremental is not None and table.incremental.column:
        need(table.incremental.column, "incremental.column",
             _TIMES | {"int2", "int4", "int8"}, "timestamp, date or integer")  # fmt: skip
        for key in table.incremental.key or []:
            need(key, "incremental.key", None, "")
    if table.postgres is not None and table.postgres.split_by is not None:
        need(table.postgres.split_by, "postgres.split_by",
             _TIMES | {"int2", "int4", "int8"}, "integer, date or timestamp")  # fmt: skip


def _srid(session: Session, described: Described, column: str) -> tuple[int | None, bool]:
    from psycopg import sql

    found = described.column(column)
    assert found is not None
    geography = found.type_name == "geography"
    query = sql.SQL("SELECT ST_SRID(q.{c}) FROM {s} AS q WHERE q.{c} IS NOT NULL LIMIT 1").format(
        c=sql.Identifier(column), s=sql.SQL(described.select)
    )
    rows = session.fetch(query)
    srid = int(rows[0][0]) if rows and rows[0][0] else None
    if geography and not srid:
        srid = 4326
    return (srid or None), geography


@dataclass(frozen=True)
class PostgresReader:
    """A table or one read-only query of a PostgreSQL database (``table: {postgres: ...}``)."""

    title: ClassVar[str] = "PostgreSQL"
    dataset: str
    table: TableSource
    secret: Secret

    @classmethod
    def from_spec(cls, dataset_id: str, table: TableSource) -> PostgresReader:
        assert table.postgres is not None
        return cls(dataset_id, table, resolve_dsn(table.postgres, _subject(dataset_id)))

    @property
    def label(self) -> str:
        pg = self.table.postgres
        assert pg is not None
        return f"table {pg.table}" if pg.table else f"query of {self.dataset}"

    @contextlib.contextmanager
    def open(
        self, watermark: Any, workers: int, previous: dict[str, Any] | None = None
    ) -> Iterator[SourcePlan]:
        spec = self.table
        pg = spec.postgres
        assert pg is not None
        subject = _subject(self.dataset)
        with Session(self.secret, self.label) as session:
            described = session.describe(pg)
            check_columns(described, spec, subject)
            key: list[str] = []
            if spec.incremental is not None:
                key = list(spec.incremental.key or described.primary_key)
                if not key:
                    raise SpecError(
                        f"{subject}.incremental.key",
                        f"{described.label} has no primary key to recognise an updated row",
                        "name the columns identifying a row in `incremental.key`",
                    )
            srid, geography = None, False
            if spec.geometry.column is not None:
                srid, geography = _srid(session, described, spec.geometry.column)
            numeric = {
                c.name: (c.precision, c.scale or 0) if c.precision and c.precision <= 38 else None
                for c in described.columns
                if c.type_name == "numeric"
            }
            parts = session.plan_parts(described, spec, watermark, workers)
            key_parts: list[Part] = []
            if previous is not None and spec.incremental and spec.incremental.deletes == "remove":
                # Every row's key, to find the rows deleted since the last build.
                key_parts = session.plan_parts(described, spec, None, workers, columns=key)
            summary = f"{described.label}, {len(described.columns)} columns"
            if described.heap_bytes:
                summary += f", {described.heap_bytes / 1e6:.0f} MB heap"
            yield SourcePlan(
                label=described.label,
                summary=summary,
                parts=parts,
                reader=PartQuery(self.secret, session.snapshot, self.label),
                key=key,
                srid=srid,
                geography=geography,
                numeric=numeric,
                key_parts=key_parts,
                record={
                    "kind": "table" if pg.table else "query",
                    "table": pg.table,
                    "crs_srid": srid,
                },
            )


def _subject(dataset_id: str) -> str:
    return f"datasets[{dataset_id}].table"
