"""Benchmark: what finding rows deleted in PostgreSQL costs an incremental table build.

The occurrence table of ``benchmarks/tables.py`` (``--rows``, year partitions), built once
with ``incremental: {column: modified}``; then, each a ``lake build`` in its own process
tree (wall time, peak RSS of the tree):

- ``nothing new, deletes: ignore``: the watermark query only (the cost before deletions
  were found);
- ``nothing new``: the same plus every source key read in the snapshot and each published
  file's key column checked (the default, ``deletes: remove``);
- ``a week deleted``: the rows of one week deleted in the source (one partition);
- ``0.1 % deleted everywhere``: every thousandth row deleted (every partition);
- ``full refresh``: the whole table read and written again (what removing deleted rows
  cost before).

    python benchmarks/deletions.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from measure import run_measured
from tables import generate, occurrence_spec

RESULTS = Path(__file__).resolve().parent / "results" / "deletions.json"


def _spec(out: Path, deletes: str) -> Path:
    return occurrence_spec(out, f"spec-{deletes}.yaml",
                           incremental={"column": "modified", "deletes": deletes})  # fmt: skip


def _build(dsn: str, spec: Path, *extra: str) -> dict[str, Any]:
    lake = shutil.which("lake") or str(Path(sys.executable).parent / "lake")
    log = spec.parent / "build.log"
    with open(log, "w") as out:
        measured = run_measured([lake, "build", str(spec), *extra], stdout=out,
                                env={**os.environ, "LAKE_BENCH_DSN": dsn})  # fmt: skip
    import re

    found = re.search(r"(\d+) files in (\d+) partitions", " ".join(log.read_text().split()))
    measured["partitions"] = int(found.group(2)) if found else 0
    return measured


def _execute(dsn: str, statement: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(statement).rowcount


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "LAKE_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    dsn, heap = generate(args.dsn, args.rows)
    work = Path(tempfile.mkdtemp(prefix="lake-bench-deletions-"))
    out = work / "lake"
    remove, ignore = _spec(out, "remove"), _spec(out, "ignore")
    steps: dict[str, Any] = {"first build": _build(dsn, remove)}
    steps["nothing new, deletes: ignore"] = _build(dsn, ignore)
    steps["nothing new"] = _build(dsn, remove)
    week = _execute(dsn, "DELETE FROM occurrence WHERE event_date >= '2000-03-01' "
                         "AND event_date < '2000-03-08'")  # fmt: skip
    steps[f"a week deleted ({week:,} rows)"] = _build(dsn, remove)
    spread = _execute(dsn, "DELETE FROM occurrence WHERE id % 1000 = 0")
    steps[f"0.1 % deleted everywhere ({spread:,} rows)"] = _build(dsn, remove)
    steps["full refresh"] = _build(dsn, remove, "--full-refresh")
    print(f"{'step':<44}{'seconds':>9}{'peak RSS':>11}  partitions rewritten")
    for name, r in steps.items():
        print(
            f"{name:<44}{r['seconds']:>9.1f}{r['peak_rss'] / 2**30:>9.2f} GiB  "
            f"{r['partitions'] or '-'} {'' if r['status'] == 'ok' else r['status']}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": args.rows, "heap_bytes": heap, "steps": steps,
    }, indent=1))  # fmt: skip
    # The generated table has lost rows: the next run regenerates it.
    _execute(dsn, "DROP TABLE occurrence")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
