"""infra/ is written for users' platforms (no container engine runs here): parse every file
and check that it agrees with the command line, the spec and the lake's needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
import yaml

from lake.cli import app
from lake.flows.cluster import WORKER_ENVIRON
from lake.spec import parse_spec

INFRA = Path(__file__).resolve().parents[1] / "infra"


def _build_options() -> set[str]:
    command = typer.main.get_command(app)
    build = command.commands["build"]  # type: ignore[attr-defined]
    return {opt for param in build.params for opt in getattr(param, "opts", [])}


def _check_build_args(args: list[str]) -> tuple[str, str]:
    """A `lake build SPEC --scheduler ADDR` invocation; returns (spec path, scheduler)."""
    assert args[0] == "build"
    options = _build_options()
    flags = [a for a in args[2:] if a.startswith("--")]
    assert set(flags) <= options, flags
    return args[1], args[args.index("--scheduler") + 1]


def test_dockerfile_installs_the_command_and_worker_settings() -> None:
    text = (INFRA / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["lake"]' in text and "pip install --no-cache-dir ." in text
    for key, value in WORKER_ENVIRON.items():
        assert f"{key}={value}" in text


def test_compose_stack_agrees_with_the_spec_and_command_line() -> None:
    compose = yaml.safe_load((INFRA / "compose" / "compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    assert {"postgis", "minio", "bucket", "scheduler", "worker", "builder"} <= set(services)
    spec_path, scheduler = _check_build_args(services["builder"]["command"])
    assert spec_path == "/spec/lake.yaml"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["builder"]["volumes"]}
    spec_file = INFRA / "compose" / mounts[spec_path].removeprefix("./")
    spec = parse_spec(yaml.safe_load(spec_file.read_text()), str(spec_file), spec_file.parent)
    spec.check_catalogue(str(spec_file))
    # The scheduler address is the scheduler service on the port it listens on.
    host, port = scheduler.removeprefix("tcp://").split(":")
    assert host == "scheduler" and port in services["scheduler"]["entrypoint"]
    assert services["worker"]["entrypoint"][2] == scheduler
    # Every DSN variable the spec names is in the builder's environment; no password in it.
    env = services["builder"]["environment"]
    for dataset in spec.datasets:
        if dataset.table is not None:
            name = dataset.table.postgres.dsn_env
            assert name in env and "@" in env[name] and ":" not in env[name].split("@")[0][13:]
    # The target bucket and endpoint are the MinIO service and the bucket made for it.
    assert spec.root == "s3://lake"
    assert spec.storage_options["endpoint_url"] == "http://minio:9000"
    assert "local/lake" in " ".join(services["bucket"]["command"])
    for key, value in WORKER_ENVIRON.items():
        assert services["worker"]["environment"][key] == str(value)


def test_kubernetes_manifests_agree_with_the_command_line() -> None:
    cluster = yaml.safe_load((INFRA / "kubernetes" / "daskcluster.yaml").read_text())
    assert cluster["kind"] == "DaskCluster" and cluster["apiVersion"] == "kubernetes.dask.org/v1"
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    scheduler_port = next(
        p["port"] for p in cluster["spec"]["scheduler"]["service"]["ports"]
        if p["name"] == "tcp-comm"
    )  # fmt: skip
    documents = list(yaml.safe_load_all((INFRA / "kubernetes" / "builder.yaml").read_text()))
    config = next(d for d in documents if d["kind"] == "ConfigMap")
    job = next(d for d in documents if d["kind"] == "CronJob")
    assert job["spec"]["concurrencyPolicy"] == "Forbid"  # one writer at a time
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    spec_path, scheduler = _check_build_args(container["args"])
    # The operator names the scheduler service <cluster>-scheduler.
    assert scheduler == f"tcp://{name}-scheduler.{namespace}.svc.cluster.local:{scheduler_port}"
    mount = container["volumeMounts"][0]["mountPath"]
    key = spec_path.removeprefix(mount + "/")
    spec = parse_spec(yaml.safe_load(config["data"][key]), "configmap", Path("/"))
    spec.check_catalogue("configmap")
    secret = container["envFrom"][0]["secretRef"]["name"]
    workers = cluster["spec"]["worker"]["spec"]["containers"][0]
    assert workers["envFrom"][0]["secretRef"]["name"] == secret
    text = (INFRA / "kubernetes" / "builder.yaml").read_text()
    for dataset in spec.datasets:
        if dataset.table is not None:
            assert f"--from-literal={dataset.table.postgres.dsn_env}=" in text
    env = {e["name"]: e["value"] for e in workers["env"]}
    for k, value in WORKER_ENVIRON.items():
        assert env[k] == str(value)
    threads = workers["command"][workers["command"].index("--nthreads") + 1]
    assert threads == "1"  # one thread per worker, as the local cluster runs them


def test_bucket_policy_is_public_read_only_and_cors_allows_ranges() -> None:
    policy = json.loads((INFRA / "bucket" / "policy.json").read_text())
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == ["s3:GetObject"]
    assert statement["Resource"] == ["arn:aws:s3:::lake/*"]
    compose = yaml.safe_load((INFRA / "compose" / "compose.yaml").read_text())
    assert "/bucket/policy.json local/lake" in " ".join(compose["services"]["bucket"]["command"])
    [rule] = json.loads((INFRA / "bucket" / "cors.json").read_text())["CORSRules"]
    assert rule["AllowedOrigins"] == ["*"] and set(rule["AllowedMethods"]) == {"GET", "HEAD"}
    assert "Range" in rule["AllowedHeaders"] and "Content-Range" in rule["ExposeHeaders"]
