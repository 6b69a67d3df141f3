"""``lake subset``: cut a published cube or table to a request and write it to one file."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lake.cli.app import EndpointUrl, _fail, _lake_root, _size, app, err, out
from lake.errors import LakeError


@app.command()
def subset(
    root: Annotated[str, typer.Argument(help="The lake's root folder or URL (s3://, https://).")],
    dataset: Annotated[str, typer.Argument(help="The dataset id (a second table: ID/TABLE).")],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help=(
                "The file to write; its suffix is the format: .nc, .zarr or .csv for a cube, "
                ".parquet, .csv or .geojson for a table."
            ),
        ),
    ],
    bbox: Annotated[
        str | None,
        typer.Option(
            help=(
                "W,S,E,N in degrees (west > east crosses 180°); x,y,x,y is a point: the nearest "
                "cell's series."
            )
        ),
    ] = None,
    time: Annotated[
        str | None,
        typer.Option(
            help=("START/END in ISO 8601 (either end may be left open); one date: its steps.")
        ),
    ] = None,
    depth: Annotated[str | None, typer.Option(help="MIN/MAX, or one level (the nearest).")] = None,
    variables: Annotated[str | None, typer.Option(help="A cube's variables: a,b.")] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            help=(
                "Print the layout (or files) chosen and the chunks and bytes it would read; "
                "write nothing."
            )
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Cut a cube or a table to a bbox, time, depth and variables, and write it to a file."""
    from lake.read.subset import plan_subset, write_subset

    lake_root = _lake_root(root, endpoint_url)
    request: dict[str, Any] = {"bbox": bbox, "time": time, "depth": depth,
                               "variables": variables}  # fmt: skip
    try:
        plan = plan_subset(lake_root, dataset, output, **request)
        for line in ["lake subset --dry-run (nothing written)"] * dry_run + plan.lines():
            out.print(escape(line), highlight=False)
        if dry_run:
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())  # fmt: skip
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task(f"subset {dataset}", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = write_subset(plan, overwrite=overwrite, progress=progress)
    except LakeError as exc:
        _fail(exc)
    rows = "" if result.rows is None else f", {result.rows:,} rows"
    out.print(f"wrote {escape(output)}: {_size(result.bytes)}{rows} in {result.seconds:.1f} s",
              highlight=False)  # fmt: skip
