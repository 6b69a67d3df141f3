"""PostgreSQL sources: a read-only session, one exported snapshot, parts read as Arrow.

The coordinator opens one session with psycopg, exports its snapshot (as ``pg_dump -j``
does) and keeps it open while workers read. Each worker opens its own ADBC connection,
joins that snapshot (``SET TRANSACTION SNAPSHOT``) and streams its part with binary
``COPY`` into Arrow record batches: no per-row Python objects, memory bounded by the batch.

The DSN is held in a :class:`Secret` (``repr`` shows ``***``); every message from the
drivers passes through :func:`lake.storage.redact` with the DSN's password removed.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from lake.errors import LakeError, SourceError, SpecError
from lake.storage import redact

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa

    from lake.spec import Postgres, TableSource

_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f]+-[0-9A-Fa-f]+-[0-9]+$")
# Rows of heap per parallel part: big enough that a part's query costs far more than its
# connection, small enough that parts balance over the workers.
PART_BYTES = 128 * 2**20
APPLICATION_NAME = "lake-build"


@dataclass(frozen=True)
class Secret:
    """A DSN that must never be printed."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    def secrets(self) -> list[str]:
        """The strings to strip from any message: the password and the whole DSN."""
        found = [self.value] if self.value else []
        try:
            from psycopg.conninfo import conninfo_to_dict

            password = conninfo_to_dict(self.value).get("password")
        except Exception:
            password = None
        if isinstance(password, str) and password:
            found.append(password)
            found.append(urllib.parse.quote(password, safe=""))
        return found

    def redact(self, text: str) -> str:
        return redact(text, self.secrets())

    def adbc_uri(self) -> str:
        """The DSN as a libpq URI (ADBC takes URIs only); empty means libpq's environment."""
        from psycopg.conninfo import conninfo_to_dict

        if self.value.startswith(("postgresql://", "postgres://")):
            base = self.value
        else:
            params = {k: str(v) for k, v in conninfo_to_dict(self.value).items()}
            base = "postgresql://" + ("?" + urllib.parse.urlencode(params) if params else "")
        joiner = "&" if "?" in base else "?"
        return f"{base}{joiner}application_name={APPLICATION_NAME}"


def resolve_dsn(pg: Postgres, subject: str) -> Secret:
    """The DSN named by ``dsn_env``; empty (libpq's environment and pgpass) when not named."""
    if pg.dsn_env is None:
        return Secret("")
    value = os.environ.get(pg.dsn_env, "")
    if not value.strip():
        raise SpecError(
            f"{subject}.postgres.dsn_env",
            f"the environment variable {pg.dsn_env} is not set",
            f"export {pg.dsn_env}=postgresql://USER@HOST:5432/DBNAME (keep the password in "
            "~/.pgpass or PGPASSWORD, not in files)",
        )
    return Secret(value.strip())


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


@dataclass(frozen=True)
class Part:
    index: int
    sql: str


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_relation(name: str) -> str:
    return ".".join(_quote_name(p) for p in name.split("."))


_RULES: list[tuple[tuple[str, ...], tuple[str, ...], str | None, str]] = [
    # (SQLSTATEs, message fragments, problem (None: the server's own words), fix)
    (("28P01",), ("password authentication failed",), "the server refused the password",
     "check the password in the DSN's environment variable, PGPASSWORD or ~/.pgpass"),
    (("28000", "3D000"), ('database "', 'role "'), None,
     "check the user and database names in the DSN"),
    (("25006",), ("read-only transaction", "data-modifying statement"),
     "the query writes to the database; sources are read in read-only transactions",
     "give a single SELECT (no INSERT, UPDATE, DELETE or writing functions)"),
    (("42601",), ("syntax error",), "is not a single valid SELECT ({first})",
     "give one SELECT statement, without a second statement after it"),
    (("42P01",), (), None,
     "check the schema and table name (names are quoted, so case-sensitive)"),
    (("42703",), (), None, "check the column names in the spec and the query"),
    (("42501",), (), None, "grant the build's user SELECT on the source"),
    (("08001", "08006"), ("connect",), "cannot connect to the server ({first})",
     "check host, port and that the server accepts connections from this machine"),
]  # fmt: skip


def source_error(label: str, exc: BaseException, secret: Secret) -> LakeError:
    """Map a driver error to one message naming the source, the fault and the fix."""
    text = secret.redact(str(exc)).strip()
    state = getattr(exc, "sqlstate", None) or _sqlstate(text)
    first = text.splitlines()[0] if text else type(exc).__name__
    first = re.sub(r"^(?:IO|INVALID_STATE|INTERNAL|UNKNOWN): \[libpq\] ", "", first)
    for states, fragments, problem, fix in _RULES:
        if state in states or any(f in text for f in fragments):
            return SourceError(label, (problem or "{first}").format(first=first), fix)
    return SourceError(label, first, "check the source in the spec and the database")


def _sqlstate(text: str) -> str | None:
    match = re.search(r"SQLSTATE: ([0-9A-Z]{5})", text)
    return match.group(1) if match else None


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
    ) -> list[Part]:
        """Split the read into parts; all see this session's snapshot."""
        from psycopg import sql

        where: list[sql.Composable] = []
        if table.incremental is not None and watermark is not None:
            where.append(
                sql.SQL("q.{} > {}").format(
                    sql.Identifier(table.incremental.column), sql.Literal(watermark)
                )
            )
        base = sql.SQL("SELECT q.* FROM {} AS q").format(sql.SQL(described.select))
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
        n = wanted or max(1, min(512, math.ceil(described.heap_bytes / PART_BYTES)))
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
        n = max(1, min(512, wanted or default))
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


def read_part(secret: Secret, snapshot: str, sql: str, label: str) -> Iterator[pa.RecordBatch]:
    """Stream one part as Arrow batches inside the exported snapshot (worker side)."""
    import adbc_driver_postgresql.dbapi as adbc

    if snapshot and not _SNAPSHOT_ID.match(snapshot):
        raise ValueError("malformed snapshot id")
    try:
        conn = adbc.connect(secret.adbc_uri(), autocommit=True)
    except Exception as exc:
        raise source_error(label, exc, secret) from None
    try:
        cur = conn.cursor()
        try:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if snapshot:
                cur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            cur.execute(sql)
            reader = cur.fetch_record_batch()
            yield from reader
            cur.execute("COMMIT")
        except LakeError:
            raise
        except Exception as exc:
            if "invalid snapshot identifier" in str(exc):
                raise SourceError(
                    label,
                    "the coordinator's snapshot is gone (its session ended during the read)",
                    "rerun the build; keep the machine running `lake build` connected to the "
                    "server until it finishes",
                ) from None
            raise source_error(label, exc, secret) from None
        finally:
            cur.close()
    finally:
        conn.close()
