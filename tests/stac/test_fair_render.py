"""The ISO 19139 document is pygeometa's own rendering, from templates compiled once."""

from __future__ import annotations

import copy

from lake.stac.fair import _Facts, _mcf, render_iso19139


def _record(title: str) -> dict[str, object]:
    facts = _Facts(
        id="sst", title=title, abstract="Daily sea surface temperature & salinity <test>",
        license="CC-BY-4.0", license_url="https://spdx.org/licenses/CC-BY-4.0.html",
        keywords=["ocean", "temperature"], bbox=[-20.0, 40.0, 10.0, 60.0],
        start="2020-01-01T00:00:00Z", end="2020-12-31T00:00:00Z",
        providers=[{"name": "Copernicus Marine", "roles": ["producer", "licensor"],
                    "url": "https://marine.copernicus.eu"}],
        lineage="Converted from NetCDF files", doi="10.1234/abc", citation=None,
        landing="https://lake.example.org/sst/collection.json",
        distribution=[{"name": "maps", "url": "https://lake.example.org/sst/maps.zarr",
                       "type": "application/vnd+zarr", "title": "Maps"}],
        kind="cube",
    )  # fmt: skip
    return _mcf(facts, "2026-01-02")


def test_iso19139_is_what_pygeometa_writes_record_after_record() -> None:
    from pygeometa.schemas.iso19139 import ISO19139OutputSchema

    for title in ("Sea temperature", "Salinité de surface"):
        record = _record(title)
        expected = ISO19139OutputSchema().write(copy.deepcopy(record))
        ours = render_iso19139(copy.deepcopy(record))
        assert ours == expected
        assert title in ours
