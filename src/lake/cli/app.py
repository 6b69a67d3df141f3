"""The ``lake`` command line: a thin wrapper over the public API (:mod:`lake.api`).

Exit codes: 0 success; 1 unexpected failure; 2 invalid spec or arguments; 3 a source cannot
be read or is inconsistent; 4 the target cannot be written or extended; 5 another build
holds the lake's lease.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lake.errors import ExitCode, LakeError
from lake.storage import Root, redact, secret_values

if TYPE_CHECKING:
    from lake.flows.cubes import CubeResult
    from lake.report import Report
    from lake.spec import Spec
    from lake.tables.plan import TableResult

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build a cloud-native marine data lake: Zarr v3 cubes from NetCDF files and "
    "GeoParquet tables from PostgreSQL.",
)
# Logs and CI are not terminals: give the summary table room instead of wrapping its cells.
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
out = Console(width=None if sys.stdout.isatty() else 160)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


EndpointUrl = Annotated[str | None, typer.Option(help="S3 endpoint of a non-AWS object store.")]


def _fail(exc: LakeError) -> NoReturn:
    """Print a user error (input, fault, fix) and what was published before it; exit with
    its code."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
    for note in getattr(exc, "__notes__", []):
        err.print(f"note: {escape(note)}", highlight=False)
    raise typer.Exit(int(exc.exit_code)) from None


def _lake_root(root: str, endpoint_url: str | None) -> Root:
    """The root named on the command line (an S3 endpoint when given)."""
    return Root(root, {"endpoint_url": endpoint_url} if endpoint_url else {})


def _exit_on_problems(report: Report, checked: str) -> None:
    """Print each problem (it names its object) and exit 3 if there is any."""
    problems = report.problems
    for problem in problems:
        out.print(escape(str(problem)), highlight=False)
    if problems:
        err.print(f"{len(problems)} problem(s) in {checked}")
        raise typer.Exit(int(ExitCode.SOURCE))


@app.callback()
def _root() -> None:
    """Build a cloud-native marine data lake."""


@app.command()
def build(
    spec: Annotated[Path, typer.Argument(help="The spec file (YAML).")],
    only: Annotated[str | None, typer.Option(help="Build only the dataset with this id.")] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Address of an existing Dask scheduler (default: a local cluster)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Workers of the local cluster (default: one per core)."),
    ] = None,
    full_refresh: Annotated[
        bool,
        typer.Option(help="Rebuild table datasets from the whole source, not only new rows."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Print the plan (sources, what would be read and written) only.")
    ] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks of unexpected errors.")] = False,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help=(
                "Seconds to wait for another build of the same lake to end (default: none; exit 5 "
                "naming it)."
            ),
        ),
    ] = 0.0,
) -> None:
    """Build or update the lake described by SPEC: new data is appended, nothing else changes."""
    run_build(spec, only, scheduler, workers, full_refresh, debug, dry_run, wait)


def run_build(
    spec: Path,
    only: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    full_refresh: bool = False,
    debug: bool = False,
    dry_run: bool = False,
    wait: float = 0.0,
) -> None:
    """Build every dataset of ``spec`` (or ``only`` one), then the catalogue; print a summary."""
    if scheduler is None:
        from lake.flows.processes import start_worker_server

        start_worker_server()  # its imports and ours proceed side by side
    import lake.api

    parsed: Spec | None = None
    try:
        parsed = lake.api.load_spec(spec)  # its catalogue fields are checked once the
        # sources have filled what they say of themselves (a NetCDF file's ACDD, an EML)
        if dry_run:
            plans = lake.api.plan(parsed, only=only, scheduler=scheduler, workers=workers,
                                  full_refresh=full_refresh, debug=debug)  # fmt: skip
            root = Root(parsed.root, parsed.storage_options)
            out.print(f"lake build --dry-run: {root.display} (nothing written)", highlight=False)
            for p in plans:
                out.print(f"\n{p.id} ({p.kind})\n  source:      {p.source}\n"
                          f"  would read:  {p.read}\n  would write: {p.write}",
                          highlight=False)  # fmt: skip
            return
        report = lake.api.build(parsed, only=only, scheduler=scheduler, workers=workers,
                                full_refresh=full_refresh, progress=True, debug=debug,
                                wait=wait)  # fmt: skip
    except LakeError as exc:
        _fail(exc)
    except Exception as exc:
        if debug:
            raise
        secrets = secret_values(parsed.storage_options) if parsed else []
        notes = getattr(exc, "__notes__", [])
        published = "; ".join(notes) if notes else "Nothing was published"
        err.print(
            f"[bold red]error:[/] unexpected {type(exc).__name__}: "
            f"{escape(redact(str(exc), secrets))}. {escape(redact(published, secrets))}; "
            "rerun with --debug for the traceback.",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(int(ExitCode.UNEXPECTED)) from None

    table = Table(title=f"lake build: {report.root}")
    for column in ("dataset", "read", "bytes in", "size on storage", "holds", "change",
                   "seconds"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("dataset", "change") else "right")
    for d in report.datasets:
        table.add_row(*(_cube_row(d.detail) if d.kind == "cube" else _table_row(d.detail)))
    out.print(table)
    for note in [*report.notes, *(n for d in report.datasets for n in d.notes)]:
        out.print(f"note: {escape(note)}", highlight=False)
    catalogue = report.catalogue
    out.print(
        f"catalogue: {report.root}/catalog.json, {catalogue.collections} collection(s) "
        f"refreshed, {catalogue.items} items ({catalogue.written} written, "
        f"{catalogue.removed} removed)",
        highlight=False,
    )


@app.command()
def validate(
    root: Annotated[str, typer.Argument(help="The lake's root folder or URL.")],
    schemas: Annotated[
        Path | None,
        typer.Option(help="A folder of schemas with index.json (default: fetch by URL)."),
    ] = None,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Check every catalogue document and GeoParquet file against the official schemas."""
    import lake.api

    try:
        report = lake.api.validate(_lake_root(root, endpoint_url), schemas)
    except LakeError as exc:
        _fail(exc)
    for note in report.notes:
        out.print(f"note: {escape(note)}", highlight=False)
    _exit_on_problems(report, f"{report.objects} documents and files")
    out.print(f"{report.objects} documents and files valid", highlight=False)


def _cube_row(r: CubeResult) -> list[str]:
    changes = [
        f"{k} +{v}" + (f" ({r.replaced[k]} replaced)" if r.replaced.get(k) else "")
        for k, v in r.added.items()
    ]
    added = ", ".join(changes) or "up to date"
    return [
        r.dataset, f"{r.files_read} of {r.files_found} files\n{r.files_scanned} scanned",
        _size(r.bytes_in),
        _size(r.bytes_out), "a static layer" if r.static else f"{r.ntime} time steps", added,
        f"{r.seconds:.1f}",
    ]  # fmt: skip


def _table_row(r: TableResult) -> list[str]:
    if r.rows_read == 0 and r.files_written == 0 and not r.partitions_written:
        change = "up to date"
    else:
        verb = "rebuilt" if r.full else "updated"
        change = f"{verb}: {r.files_written} files in {r.partitions_written} partitions"
        if r.invalid:
            change += f"; {r.invalid} rows without valid coordinates " + (
                "dropped" if r.dropped else "kept with a null geometry"
            )
    return [
        r.dataset, f"{r.rows_read} rows", _size(r.bytes_in), _size(r.bytes_out),
        f"{r.rows} rows", change, f"{r.seconds:.1f}",
    ]  # fmt: skip


@app.command()
def verify(
    root: Annotated[str, typer.Argument(help="The lake's root folder or URL.")],
    endpoint_url: EndpointUrl = None,
) -> None:
    """Re-read every asset: exists, size and checksum, opens, counts and shapes match."""
    import lake.api

    report = lake.api.verify(_lake_root(root, endpoint_url))
    for note in report.notes:
        out.print(f"note: {escape(note)}", highlight=False)
    _exit_on_problems(report, f"{report.objects} objects checked")
    out.print(f"{report.objects} objects verified", highlight=False)


@app.command(name="ls")
def list_datasets(
    root: Annotated[str, typer.Argument(help="The lake's root folder or URL.")],
    endpoint_url: EndpointUrl = None,
) -> None:
    """List the lake's datasets: kind, items, size, extents, last update."""
    import lake.api

    try:
        lake_root = _lake_root(root, endpoint_url)
        entries = lake.api.ls(lake_root)
    except LakeError as exc:
        _fail(exc)
    table = Table(title=f"lake: {lake_root.display}")
    for column in ("dataset", "kind", "items", "rows", "size", "bbox", "time", "updated"):
        table.add_column(column, justify="right" if column in ("items", "rows", "size") else "left")
    for e in entries:
        bbox = "" if e.bbox is None else ", ".join(f"{v:.2f}" for v in e.bbox)
        time = " .. ".join((v or "open")[:10] for v in e.interval)
        if e.kind == "cube" and not any(e.interval):
            time = "no time axis"  # a static layer
        rows = "" if e.rows is None else f"{e.rows:,}"
        table.add_row(e.id, e.kind, str(e.items), rows, _size(e.size), bbox, time, e.updated or "")
    out.print(table)
    from lake.lease import Lease, stale_reason

    holder = Lease(lake_root).read()
    if holder is not None:  # readers are not blocked; they are told
        reason = stale_reason(holder)
        state = f"left by {holder.describe()}: {reason}" if reason else \
            f"held by {holder.describe()}, until {holder.expires} unless renewed"  # fmt: skip
        out.print(f"note: the lake's build lease is {escape(state)}", highlight=False)


@app.command()
def serve(
    root: Annotated[Path, typer.Argument(help="The lake's root folder.")],
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve a local lake over HTTP (CORS, range requests) for STAC Browser and clients."""
    from lake.serve import make_server

    if not (root / "catalog.json").is_file():
        err.print(f"error: {root}: holds no catalog.json. Fix: give the root of a built lake.")
        raise typer.Exit(int(ExitCode.SPEC))
    server = make_server(str(root), host, port)
    url = f"http://{host}:{server.server_address[1]}/catalog.json"
    out.print(f"serving {root} at {url}", highlight=False)
    out.print(
        f"STAC Browser: https://radiantearth.github.io/stac-browser/#/external/{url}",
        highlight=False,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def demo(
    folder: Annotated[Path, typer.Argument(help="Where to put sources and lake.")] = Path(
        "lake-demo"
    ),
    schemas: Annotated[
        Path | None,
        typer.Option(help="A folder of schemas with index.json (default: fetch by URL)."),
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Local workers.")] = None,
) -> None:
    """The whole pipeline on generated data: NetCDF cubes and an embedded PostgreSQL."""
    import os
    import shutil
    import tempfile
    import time

    import lake.api
    from lake import demo as d
    from lake.stac.validate import CORE, Schemas

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    out.print(f"1/4 generating a daily gridded product and a mooring in {folder}/sources")
    d.write_sources(folder)
    pgdata = Path(tempfile.mkdtemp(prefix="lake-demo-pg-"))
    try:
        with d.embedded_database(pgdata) as dsn:
            rows = d.fill_database(dsn)
            out.print(f"2/4 embedded PostgreSQL with {rows:,} generated occurrences")
            os.environ[d.DEMO_ENV] = dsn
            out.print("3/4 building the lake")
            run_build(d.write_spec(folder), workers=workers)
    finally:
        shutil.rmtree(pgdata, ignore_errors=True)
    checker = Schemas(schemas)
    try:
        checker.load(CORE["Catalog"])
    except Exception as exc:
        out.print(f"4/4 validation skipped: the schemas cannot be fetched ({exc}); run "
                  f"`lake validate {folder}/lake --schemas FOLDER` with a local copy")  # fmt: skip
    else:
        valid = lake.api.validate(str(folder / "lake"), schemas)
        _exit_on_problems(valid, f"{valid.objects} documents and files")
        out.print(f"4/4 {valid.objects} catalogue documents and GeoParquet files valid")
    report = lake.api.verify(str(folder / "lake"))
    _exit_on_problems(report, f"{report.objects} objects checked")
    out.print(f"    {report.objects} objects verified (sizes, checksums, counts, shapes)")
    out.print(d.how_to_read(folder), highlight=False)
    out.print(f"demo finished in {time.perf_counter() - started:.0f} s", highlight=False)


@app.command()
def samples(
    folder: Annotated[Path, typer.Argument(help="Where to write the files.")],
    days: Annotated[int, typer.Option(min=1, help="Number of daily files.")] = 10,
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")] = "2024-01-01",
) -> None:
    """Write a generated Copernicus-like daily NetCDF product to FOLDER (to try a build)."""
    from lake.samples import write_daily_product

    paths = write_daily_product(folder, start=start, days=days)
    out.print(f"wrote {len(paths)} daily files to {folder}")


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        if exc.code in (0, None):
            _exit_at_once()
        raise
    except KeyboardInterrupt:
        err.print("interrupted: nothing was published by the unfinished step")
        sys.exit(130)
    except LakeError as exc:  # pragma: no cover - raised outside a command
        err.print(f"error: {redact(str(exc))}")
        sys.exit(int(exc.exit_code))


def _exit_at_once() -> None:
    """End a command that succeeded without tearing the interpreter down.

    Everything the command wrote is closed and published by now; what is left is freeing
    the modules and objects of Dask, xarray, Arrow and matplotlib one by one, 0.4-0.5 s
    after every build (measured), a sixth of a rerun with nothing new. What the interpreter
    does first at exit still happens, in its order: threads that are not daemons are
    joined (background writers finish), the exit handlers run (log handlers, temporary
    files, child processes); then the output is flushed.
    """
    import atexit
    import threading

    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


__all__ = ["ExitCode", "app", "main"]
