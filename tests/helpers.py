"""Helpers shared by the tests."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from lake.cubes.coords import normalise
from lake.cubes.netcdf import _strings_to_unicode
from lake.spec import parse_spec

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

    import lake
    from lake.spec import Spec


SHARED = Path(__file__).resolve().parents[1].parent / "shared"
"""``../shared`` beside the project root: sample data and the official schemas."""


def spec_for(root: str, netcdf: Any, tmp: Path, **cube: Any) -> Spec:
    data = {
        "root": root,
        "datasets": [
            {"id": "cube", "cube": {"netcdf": netcdf, **cube}, "metadata": {"license": "CC0-1.0"}}
        ],
    }
    if "storage_options" in cube:
        data["storage_options"] = cube["storage_options"]
    return parse_spec(data, "test-spec.yaml", tmp)


def file_table_spec(tmp: Path, dataset: str, license: str, **table: Any) -> Spec:
    """A spec of one table dataset read from files (``netcdf=...`` or ``dwca=...``),
    built into ``tmp/lake``."""
    data = {
        "root": str(tmp / "lake"),
        "datasets": [{"id": dataset, "table": table, "metadata": {"license": license}}],
    }
    return parse_spec(data, "test-spec.yaml", tmp)


def build_on(client: Client, spec: Spec) -> lake.BuildReport:
    """``lake.build`` on the test cluster, without a progress bar."""
    import lake

    return lake.build(spec, scheduler=client.scheduler.address, progress=False)


def decoded_source(*paths: Any) -> xr.Dataset:
    """What xarray decodes from the source files, names normalised like the cube."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = [_strings_to_unicode(normalise(xr.open_dataset(p))).load() for p in paths]
    return (
        parts[0]
        if len(parts) == 1
        else xr.concat(
            parts,
            dim="time",
            data_vars="minimal",
            coords="minimal",
            compat="override",
            join="override",
            combine_attrs="override",
        )
    )


def open_cube(url: str, **kwargs: Any) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        # Times of non-standard calendars decode to cftime objects, as xarray says.
        warnings.simplefilter("ignore", category=xr.SerializationWarning)
        return xr.open_zarr(url, **kwargs).load()


def assert_same(cube: xr.Dataset, source: xr.Dataset) -> None:
    """Values (NaN-aware, bit for bit), coordinates and attributes all equal."""
    xr.testing.assert_identical(cube, source)
    for name, var in source.variables.items():
        if var.dtype.kind == "f":
            a, b = np.asarray(cube[name].values), np.asarray(var.values)
            assert np.array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")), name
