"""Connections to PostgreSQL: the DSN as a secret, driver errors as messages, and a worker's
read of one part inside the coordinator's exported snapshot.

The DSN is held in a :class:`Secret` (``repr`` shows ``***``); every message from the
drivers passes through :func:`lake.storage.redact` with the DSN's password removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lake.errors import LakeError, SourceError, SpecError
from lake.storage import redact

if TYPE_CHECKING:
    import pyarrow as pa

    from lake.specparts import Postgres

_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f]+-[0-9A-Fa-f]+-[0-9]+$")
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


_IDLE: dict[str, Any] = {}
"""This process's ADBC connections between the parts it reads, by URI (worker side): a
connection costs a round of catalogue queries (about 40 ms here), a part only a snapshot.
Closed by :func:`release_connections` when the build's reads end."""
_IDLE_LOCK = threading.Lock()


def _connection(secret: Secret, label: str) -> tuple[str, Any]:
    import adbc_driver_postgresql.dbapi as adbc

    uri = secret.adbc_uri()
    with _IDLE_LOCK:
        conn = _IDLE.pop(uri, None)
    if conn is not None:
        return uri, conn
    try:
        return uri, adbc.connect(uri, autocommit=True)
    except Exception as exc:
        raise source_error(label, exc, secret) from None


def _keep(uri: str, conn: Any) -> None:
    with _IDLE_LOCK:
        if uri not in _IDLE:
            _IDLE[uri] = conn
            return
    conn.close()


def release_connections() -> int:
    """Close this process's idle source connections; returns how many there were."""
    with _IDLE_LOCK:
        idle = list(_IDLE.values())
        _IDLE.clear()
    for conn in idle:
        with contextlib.suppress(Exception):
            conn.close()
    return len(idle)


def read_part(secret: Secret, snapshot: str, sql: str, label: str) -> Iterator[pa.RecordBatch]:
    """Stream one part as Arrow batches inside the exported snapshot (worker side).

    The connection is kept for the process's next part when this one was read to its end
    and committed; after an error or an abandoned read it is closed."""
    if snapshot and not _SNAPSHOT_ID.match(snapshot):
        raise ValueError("malformed snapshot id")
    uri, conn = _connection(secret, label)
    reusable = False
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
            reusable = True
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
        if reusable:
            _keep(uri, conn)
        else:
            conn.close()


@dataclass(frozen=True)
class Part:
    index: int
    sql: str


@dataclass(frozen=True)
class PartQuery:
    """Reads a :class:`Part` (one SELECT) inside an exported snapshot, on a worker."""

    secret: Secret
    snapshot: str
    label: str

    def read(self, part: Part) -> Iterator[pa.RecordBatch]:
        return read_part(self.secret, self.snapshot, part.sql, self.label)

    def release(self) -> int:
        """Close the connections kept between parts (run on every worker when reads end)."""
        return release_connections()
