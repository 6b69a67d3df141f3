"""Benchmark: ``lake build`` of this tree against another commit's, in the same run.

    python benchmarks/compare.py --against HEAD~1 --dsn postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/compare.py --against main --days 60 --rows 1000000 --repeat 3

The other commit is checked out in a temporary git worktree; both trees build the same
generated sources (a daily gridded product of ``--days`` files, 1024 x 1440 float32, and,
with ``--dsn``, an occurrence table of ``--rows`` rows) into a fresh root, alternately, so
that the machine's drift hits both alike. Each build runs in its own process tree (wall
time and the peak RSS of the whole tree, as in the other benchmarks); a rebuild with
nothing new (the table is incremental) is timed too. The table prints the median of
``--repeat`` rounds and the ratio of this tree's time to the other's; results go to
``benchmarks/results/compare.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from measure import run_measured

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
RESULTS = HERE / "results" / "compare.json"


def _command(tree: Path) -> list[str]:
    """How to run that tree's command line (its module moved between versions)."""
    module = "lake.cli" if (tree / "src/lake/cli/__main__.py").exists() else "lake.flows.cli"
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def _spec(work: Path, root: Path, src: Path, with_table: bool) -> Path:
    datasets: list[dict[str, Any]] = [{
        "id": "cube", "metadata": {"license": "CC-BY-4.0"},
        "cube": {"netcdf": f"{src}/*.nc"},
    }]  # fmt: skip
    if with_table:
        datasets.append({
            "id": "occurrence", "metadata": {"license": "CC-BY-4.0"},
            "table": {
                "postgres": {"dsn_env": "LAKE_BENCH_DSN", "table": "public.occurrence"},
                "geometry": {"lon": "decimallongitude", "lat": "decimallatitude"},
                "partition_by": ["year(event_date)"],
                "incremental": {"column": "modified"},
            },
        })  # fmt: skip
    path = work / f"spec-{root.name}.yaml"
    path.write_text(json.dumps({"root": str(root), "datasets": datasets}))
    return path


def _build(tree: Path, spec: Path, env: dict[str, str]) -> dict[str, Any]:
    environ = {**env, "PYTHONPATH": str(tree / "src")}
    return run_measured([*_command(tree), "build", str(spec)], env=environ)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD~1", help="the git commit to compare with")
    parser.add_argument("--days", type=int, default=120, help="daily files of the cube")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the table")
    parser.add_argument("--dsn", help="a superuser DSN; without it no table is built")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/lake-bench-compare")
    args = parser.parse_args()

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"src-{args.days}"
    if not src.is_dir():
        sys.path.insert(0, str(PROJECT / "src"))
        from lake.samples import write_daily_product

        write_daily_product(src, start="2020-01-01", days=args.days, ny=1024, nx=1440)
    env = dict(os.environ)
    if args.dsn:
        from tables import generate

        env["LAKE_BENCH_DSN"], _ = generate(args.dsn, args.rows)
    other = work / "other"
    if other.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=PROJECT,
                       check=False)  # fmt: skip
        shutil.rmtree(other, ignore_errors=True)
    subprocess.run(["git", "worktree", "add", "--detach", str(other), args.against],
                   cwd=PROJECT, check=True, capture_output=True)  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "--short", args.against], cwd=PROJECT,
                            check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    trees = {"this tree": PROJECT, f"{args.against} ({commit})": other}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"build": [], "rebuild": []}
                                                        for n in trees}  # fmt: skip
    try:
        for round_ in range(args.repeat):
            order = list(trees.items()) if round_ % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                root = work / f"lake-{'this' if tree == PROJECT else 'other'}"
                shutil.rmtree(root, ignore_errors=True)
                spec = _spec(work, root, src, bool(args.dsn))
                for kind in ("build", "rebuild"):
                    result = _build(tree, spec, env)
                    if result["status"] != "ok":
                        raise SystemExit(f"{name}: {kind} {result['status']}")
                    runs[name][kind].append(result)
                    print(f"round {round_ + 1} {name:>24} {kind:>8}: {result['seconds']:6.1f} s "
                          f"{result['peak_rss'] / 2**30:5.2f} GiB", flush=True)  # fmt: skip
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=PROJECT,
                       check=False)  # fmt: skip

    summary: dict[str, Any] = {}
    for name, kinds in runs.items():
        summary[name] = {
            kind: {"seconds": statistics.median(r["seconds"] for r in results),
                   "peak_rss": statistics.median(r["peak_rss"] for r in results),
                   "all_seconds": [round(r["seconds"], 2) for r in results]}
            for kind, results in kinds.items()
        }  # fmt: skip
    this, them = summary["this tree"], summary[next(n for n in trees if n != "this tree")]
    print(f"\n{'':26} {'build s':>8} {'rebuild s':>10} {'peak RSS GiB':>13}")
    for name, s in summary.items():
        print(f"{name:26} {s['build']['seconds']:8.1f} {s['rebuild']['seconds']:10.1f} "
              f"{s['build']['peak_rss'] / 2**30:13.2f}")  # fmt: skip
    ratio = this["build"]["seconds"] / them["build"]["seconds"]
    print(f"{'ratio (this / other)':26} {ratio:8.2f} "
          f"{this['rebuild']['seconds'] / them['rebuild']['seconds']:10.2f}")  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "against": args.against, "commit": commit, "days": args.days,
        "rows": args.rows if args.dsn else 0, "repeat": args.repeat, "results": summary,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
