"""The static STAC catalogue: written from the lake, valid, read by real clients."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from catalogue_lake import SCHEMAS, _run, _spec
from pgdata import execute

from lake.errors import ExitCode

if TYPE_CHECKING:
    from distributed import Client

pytestmark = pytest.mark.postgres


def _offline_validator() -> Any:
    """pystac's validator with the shared schemas; an extension whose schema they lack
    (xarray-assets, deprecated upstream) is not checked, as `lake validate` notes."""
    from pystac.validation import JsonSchemaSTACValidator

    index = json.loads((SCHEMAS / "index.json").read_text())

    class Offline(JsonSchemaSTACValidator):
        def validate_extension(self, stac_dict: Any, stac_object_type: Any, stac_version: str,
                               extension_id: str, href: str | None = None) -> Any:  # fmt: skip
            if extension_id not in index:
                return None
            return super().validate_extension(stac_dict, stac_object_type, stac_version,
                                              extension_id, href)  # fmt: skip

    validator = Offline()
    for url, path in index.items():
        schema = json.loads((SCHEMAS / path).read_text())
        validator.schema_cache[url] = schema
        validator.schema_cache[url + "#"] = schema
    return validator


def test_catalogue_is_valid_and_walkable(lake: Path, client: Client) -> None:
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} is absent: the shared schemas sit beside the project root")
    code, output = _run(client, "validate", str(lake), "--schemas", str(SCHEMAS))
    assert code == 0, output
    assert "documents and files valid" in output
    assert "not checked: the fields of https://stac-extensions.github.io/xarray-assets" in output

    import pystac
    from pystac.validation import set_validator

    set_validator(_offline_validator())
    catalog = pystac.Catalog.from_file(str(lake / "catalog.json"))
    assert catalog.validate_all() > 0
    collections = {c.id: c for c in catalog.get_collections()}
    assert set(collections) == {"sst", "occ"}

    sst = collections["sst"]
    assert sst.license == "CC-BY-4.0" and sst.title == "Sea temperature"
    assert sst.extra_fields["sci:doi"] == "10.48670/moi-00027"
    rels = {link.rel: link.href for link in sst.links}
    assert rels["cite-as"] == "https://doi.org/10.48670/moi-00027"
    assert rels["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"
    raw = json.loads((lake / "sst" / "collection.json").read_text())
    assert all(link["rel"] != "self" and "://" not in link["href"]
               for link in raw["links"] if link["rel"] not in ("license", "cite-as"))  # fmt: skip
    assert {p.name for p in sst.providers or []} == {"Copernicus Marine", "marine-lake"}
    assets = sst.assets
    assert assets["maps"].media_type == "application/vnd.zarr"
    assert assets["maps"].extra_fields["zarr:zarr_format"] == 3
    assert assets["maps"].extra_fields["xarray:open_kwargs"]["engine"] == "zarr"
    assert assets["thumbnail"].roles == ["thumbnail"]
    assert assets["overview"].roles == ["overview"] and assets["overview"].media_type == "image/png"
    assert collections["occ"].assets["overview"].roles == ["overview"]
    assert (lake / "sst" / "thumbnail.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert assets["items"].roles == ["collection-mirror"]
    # The mirror's `geo` metadata says what its rows hold: the items' bbox polygons, in
    # OGC:CRS84 (as STAC geometries are), as the table files say of theirs.
    import pyarrow.parquet as pq

    for name in ("sst", "occ"):
        geo = json.loads(pq.read_schema(lake / name / "items.parquet").metadata[b"geo"])
        column = geo["columns"]["geometry"]
        types = {json.loads(p.read_text())["geometry"]["type"]
                 for p in (lake / name / "items").glob("*.json")}  # fmt: skip
        assert column["geometry_types"] == sorted(types)
        assert column["crs"]["id"] == {"authority": "OGC", "code": "CRS84"}
        assert len(column["bbox"]) == 4
    dims = sst.extra_fields["cube:dimensions"]
    assert dims["time"]["extent"] == ["2024-05-01T00:00:00Z", "2024-05-04T00:00:00Z"]
    assert dims["time"]["step"] == "P1D" and dims["latitude"]["reference_system"] == 4326
    ts_vars = assets["timeseries"].extra_fields["cube:variables"]["thetao"]
    maps_vars = assets["maps"].extra_fields["cube:variables"]["thetao"]
    assert ts_vars["shape"] == maps_vars["shape"] == [4, 1, 24, 36]
    import zarr

    for layout, described in (("maps", maps_vars), ("timeseries", ts_vars)):
        array = zarr.open_array(str(lake / "sst" / f"{layout}.zarr"), path="thetao", mode="r")
        assert described["chunks"] == list(array.chunks)
        assert described["shards"] == list(array.shards or array.chunks)
    assert ts_vars["unit"] == "degrees_C"
    # The stored type and what decodes it, as tensorstore and GDAL readers see the arrays.
    for described in (ts_vars, maps_vars, sst.extra_fields["cube:variables"]["thetao"]):
        assert described["data_type"] == "int16" and described["variable_type"] == "data"
        assert described["scale"] == pytest.approx(0.001) and described["offset"] == 10.0
        assert described["nodata"] == -32767
    assert "chunks" not in sst.extra_fields["cube:variables"]["thetao"]
    [cube_item] = list(sst.get_items())
    assert cube_item.properties["start_datetime"] == "2024-05-01T00:00:00Z"

    occ = collections["occ"]
    items = list(occ.get_items())
    assert sorted(i.id for i in items) == [f"occ.year-{y}" for y in (2019, 2020, 2021, 2022)]
    manifest = json.loads((lake / "occ" / "table.json").read_text())
    assert sum(i.properties["table:row_count"] for i in items) == manifest["rows"] == 800
    for item in items:
        for asset in item.assets.values():
            path = Path(asset.get_absolute_href() or "")
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert asset.extra_fields["file:checksum"] == "1220" + digest
            assert asset.extra_fields["file:size"] == path.stat().st_size
        assert item.properties["table:primary_geometry"] == "geometry"
        assert {c["name"] for c in item.properties["table:columns"]} >= {"id", "geometry", "bbox"}

    # Credentials of the spec never reach a document.
    for doc in lake.rglob("*.json"):
        assert "NEVER-IN-A-DOCUMENT-42" not in doc.read_text()


def test_clients_open_data_from_assets(lake: Path, geoparquet_validator: Any) -> None:
    import geopandas as gpd
    import pyarrow.parquet as pq
    import pystac
    import xarray as xr

    item = pystac.Item.from_file(str(lake / "sst" / "items" / "sst.json"))
    asset = item.assets["maps"]
    # xpystac recognises `application/vnd.zarr` without the version parameter that the Zarr
    # media type carries; it opens the same asset once the parameter is left out.
    plain = asset.clone()
    plain.href = asset.get_absolute_href() or ""
    plain.media_type = "application/vnd.zarr"
    cube = xr.open_dataset(plain, engine="stac")
    assert cube.sizes["time"] == 4 and float(cube.thetao.isel(time=0).mean()) > 0
    direct = xr.open_zarr(asset.get_absolute_href())
    assert direct.thetao.shape == cube.thetao.shape

    occ = pystac.Collection.from_file(str(lake / "occ" / "collection.json"))
    data = occ.assets["data"].get_absolute_href()
    frame = gpd.read_parquet(data)
    assert len(frame) == occ.extra_fields["table:row_count"] == 800
    mirror = pq.read_table(occ.assets["items"].get_absolute_href())
    assert mirror.num_rows == 4 and "geometry" in mirror.column_names
    # The mirror is stac-geoparquet: GeoParquet metadata (so geopandas and DuckDB see a
    # geometry) and the stac-geoparquet version.
    meta = mirror.schema.metadata
    geo = json.loads(meta[b"geo"])
    geoparquet_validator.validate(geo)
    assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert b"stac-geoparquet" in meta
    found = gpd.read_parquet(occ.assets["items"].get_absolute_href())
    assert sorted(found["id"]) == sorted(i.id for i in occ.get_items())


def test_update_rewrites_only_changed_items(
    lake: Path, tmp_path: Path, client: Client, pg_dsn: str
) -> None:
    items = lake / "occ" / "items"
    before = {p.name: p.stat().st_mtime_ns for p in items.iterdir()}
    collection_before = (lake / "occ" / "collection.json").read_text()
    thumbnails = {d: (lake / d / "thumbnail.png").read_bytes() for d in ("sst", "occ")}
    execute(pg_dsn, "INSERT INTO occ (id, eventdate, lon, lat) VALUES (5000, '2023-01-01', 1, 1)")
    code, output = _run(client, "build", str(_spec(tmp_path)))
    assert code == 0, output
    assert "6 items (1 written, 0 removed)" in output  # the cube item unchanged, year 2023 new
    after = {p.name: p.stat().st_mtime_ns for p in items.iterdir()}
    assert set(after) == {*before, "occ.year-2023.json"}
    assert all(after[name] == stamp for name, stamp in before.items())
    collection = json.loads((lake / "occ" / "collection.json").read_text())
    assert collection["extent"]["temporal"]["interval"][0][1].startswith("2023-01-01")
    assert collection != json.loads(collection_before)
    # The table's density map shows the new row; the cube's map is the same picture.
    assert (lake / "occ" / "thumbnail.png").read_bytes() != thumbnails["occ"]
    assert (lake / "sst" / "thumbnail.png").read_bytes() == thumbnails["sst"]


@pytest.mark.parametrize(
    ("metadata", "fragment", "exit_code"),
    [
        ({"title": "x"}, "datasets[0].metadata.license: dataset sst has no licence",
         ExitCode.SPEC),
        ({"license": "CC-BY-5.0"}, "is not an SPDX licence id", ExitCode.SPEC),
        ({"license": "CC-BY-4.0", "doi": "doi.org/abc"}, "is not a DOI", ExitCode.SPEC),
        ({"license": "other"}, "licence `other` needs the address", ExitCode.SPEC),
    ],
    ids=["missing-licence", "unknown-spdx", "invalid-doi", "other-without-url"],
)  # fmt: skip
def test_bad_catalogue_metadata_stops_before_building(
    tmp_path: Path, client: Client, metadata: dict[str, Any], fragment: str, exit_code: int
) -> None:
    spec = {
        "root": str(tmp_path / "lake"),
        "datasets": [{"id": "sst", "cube": {"netcdf": "nothing/*.nc"}, "metadata": metadata}],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    code, output = _run(client, "build", str(path))
    assert code == exit_code, output
    assert fragment in output and "Fix:" in output
    assert not (tmp_path / "lake").exists()


def test_validate_names_document_and_path(lake: Path, client: Client) -> None:
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} is absent: the shared schemas sit beside the project root")
    item = lake / "occ" / "items" / "occ.year-2020.json"
    doc = json.loads(item.read_text())
    doc["properties"]["table:row_count"] = "many"
    del doc["assets"][next(iter(doc["assets"]))]["href"]
    item.write_text(json.dumps(doc))
    code, output = _run(client, "validate", str(lake), "--schemas", str(SCHEMAS))
    assert code == ExitCode.SOURCE
    assert "occ/items/occ.year-2020.json: $.properties['table:row_count']" in output
    assert "'href' is a required property" in output


def test_lake_over_http(lake: Path) -> None:
    """The same clients through `lake serve`: CORS, ranges, media types."""
    import threading
    import urllib.request

    import geopandas as gpd
    import pystac
    import xarray as xr

    from lake.serve import make_server

    server = make_server(str(lake), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        request = urllib.request.Request(f"{base}/occ/table.json", headers={"Range": "bytes=2-9"})
        with urllib.request.urlopen(request) as response:
            assert response.status == 206 and len(response.read()) == 8
            assert response.headers["Content-Range"].startswith("bytes 2-9/")
            assert response.headers["Access-Control-Allow-Origin"] == "*"
        catalog = pystac.Catalog.from_file(f"{base}/catalog.json")
        occ = catalog.get_child("occ")
        assert occ is not None
        items = list(occ.get_items())
        assert len(items) == 4
        asset = next(iter(items[0].assets.values()))
        href = asset.get_absolute_href()
        assert href is not None and href.startswith(base)
        with urllib.request.urlopen(urllib.request.Request(href, method="HEAD")) as response:
            assert response.headers["Content-Type"] == "application/vnd.apache.parquet"
        frame = gpd.read_parquet(href)
        assert len(frame) == items[0].properties["table:row_count"]
        sst = catalog.get_child("sst")
        assert sst is not None
        cube = xr.open_zarr(sst.assets["timeseries"].get_absolute_href())
        series = cube.thetao.isel(latitude=3, longitude=5).load()
        local = xr.open_zarr(lake / "sst" / "timeseries.zarr").thetao.isel(latitude=3, longitude=5)
        assert series.equals(local.load())
    finally:
        server.shutdown()
        server.server_close()


def test_xpystac_opens_zarr_assets(lake: Path, tmp_path: Path) -> None:
    """xpystac's `engine="stac"` opens a collection's Zarr asset with its
    `xarray:open_kwargs`: as it is when the spec sets `public_url` (absolute hrefs), and
    after `asset.href = asset.get_absolute_href()` when hrefs are relative."""
    import threading

    import pystac
    import xarray as xr

    from lake.serve import make_server
    from lake.spec import load_spec
    from lake.stac.catalog import write_catalogue
    from lake.storage import Root

    server = make_server(str(lake), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    local = xr.open_zarr(lake / "sst" / "maps.zarr").load()
    try:
        relative = pystac.Collection.from_file(f"{base}/sst/collection.json")
        asset = relative.assets["maps"]
        assert asset.href == "./maps.zarr"
        asset.href = asset.get_absolute_href()  # the README's recipe
        xr.testing.assert_identical(xr.open_dataset(asset, engine="stac").load(), local)

        spec = load_spec(_spec(tmp_path, public_url=base))
        write_catalogue(Root(spec.root), spec)
        collection = pystac.Collection.from_file(f"{base}/sst/collection.json")
        assert collection.assets["maps"].href == f"{base}/sst/maps.zarr"
        xr.testing.assert_identical(
            xr.open_dataset(collection.assets["timeseries"], engine="stac").load(),
            xr.open_zarr(lake / "sst" / "timeseries.zarr").load(),
        )
        item = json.loads((lake / "sst" / "items" / "sst.json").read_text())
        assert item["assets"]["maps"]["href"] == f"{base}/sst/maps.zarr"
        occ = json.loads((lake / "occ" / "items" / "occ.year-2020.json").read_text())
        assert all(a["href"].startswith("../data/") for a in occ["assets"].values())
    finally:
        server.shutdown()
        server.server_close()


def test_public_url_gives_absolute_self_links(lake: Path, tmp_path: Path) -> None:
    from lake.spec import load_spec
    from lake.stac.catalog import write_catalogue
    from lake.storage import Root

    spec = load_spec(_spec(tmp_path, public_url="https://lake.example.org/v1/"))
    write_catalogue(Root(spec.root), spec)
    catalog = json.loads((lake / "catalog.json").read_text())
    item = json.loads((lake / "occ" / "items" / "occ.year-2020.json").read_text())
    selfs = [link["href"] for doc in (catalog, item) for link in doc["links"]
             if link["rel"] == "self"]  # fmt: skip
    assert selfs == ["https://lake.example.org/v1/catalog.json",
                     "https://lake.example.org/v1/occ/items/occ.year-2020.json"]  # fmt: skip
    others = [link["href"] for link in item["links"] if link["rel"] != "self"]
    assert all("://" not in href for href in others)


def test_ls_lists_datasets(lake: Path, client: Client) -> None:
    code, output = _run(client, "ls", str(lake))
    assert code == 0, output
    assert "sst" in output and "cube" in output
    assert "occ" in output and "table" in output and "800" in output
    assert "2019-12-31 .. 2022-03-09" in output
    code, output = _run(client, "ls", str(lake / "nothing"))
    assert code == 4 and "catalog.json: does not exist" in output


def test_rerun_with_nothing_new_writes_nothing(lake: Path, tmp_path: Path, client: Client) -> None:
    # Not the data, not the catalogue: the same documents and thumbnails are not rewritten.
    before = {p: p.stat().st_mtime_ns for p in lake.rglob("*") if p.is_file()}
    code, output = _run(client, "build", str(_spec(tmp_path)))
    assert code == 0, output
    assert "(0 written, 0 removed)" in output
    after = {p: p.stat().st_mtime_ns for p in lake.rglob("*") if p.is_file()}
    assert after == before
    # A new title changes the catalogue's root document, and only that.
    code, output = _run(client, "build", str(_spec(tmp_path, title="Another title")))
    assert code == 0, output
    again = {p: p.stat().st_mtime_ns for p in lake.rglob("*") if p.is_file()}
    changed = sorted(str(p.relative_to(lake)) for p in again if again[p] != before.get(p))
    assert changed == [".stac-documents.json", "catalog.json"]
    assert json.loads((lake / "catalog.json").read_text())["title"] == "Another title"


def test_dry_run_prints_the_plan_and_writes_nothing(
    lake: Path, tmp_path: Path, client: Client, pg_dsn: str
) -> None:
    from lake.samples import write_daily_product

    write_daily_product(tmp_path / "src", start="2024-05-05", days=1, ny=24, nx=36, seed=5)
    execute(pg_dsn, "INSERT INTO occ (id, eventdate, lon, lat) VALUES (9001, '2021-06-01', 2, 2)")
    before = {p: p.stat().st_mtime_ns for p in lake.rglob("*") if p.is_file()}
    code, output = _run(client, "build", str(_spec(tmp_path)), "--dry-run")
    assert code == 0, output
    assert "nothing written" in output
    assert "5 files found" in output and "steps 4..4" in output
    assert "table occ, 5 columns" in output and "rows with modified >" in output
    after = {p: p.stat().st_mtime_ns for p in lake.rglob("*") if p.is_file()}
    assert after == before


def _flip(path: Path, offset: int) -> bytes:
    data = path.read_bytes()
    index = offset if offset >= 0 else len(data) + offset
    path.write_bytes(data[:index] + bytes([data[index] ^ 0x5A]) + data[index + 1 :])
    return data


def test_verify_detects_a_flipped_byte_anywhere(lake: Path, client: Client) -> None:
    code, output = _run(client, "verify", str(lake))
    assert code == 0, output
    assert "objects verified" in output
    shard = next(p for p in sorted((lake / "sst" / "maps.zarr" / "thetao" / "c").rglob("*"))
                 if p.is_file())  # fmt: skip
    parquet = next((lake / "occ" / "data").rglob("*.parquet"))
    cases = [
        (shard, 40, "maps.zarr/thetao: block"),  # compressed chunk data
        (shard, -6, "maps.zarr/thetao: block"),  # the shard index
        (lake / "sst" / "timeseries.zarr" / "thetao" / "zarr.json", 30,
         "timeseries.zarr/thetao/zarr.json"),
        (parquet, 200, "its sha256 differs from the manifest"),
        (lake / "occ" / "items" / "occ.year-2020.json", -40, "occ.year-2020.json"),
        (lake / "occ" / "collection.json", 60, "occ/collection.json: differs"),
        (lake / "catalog.json", -20, "catalog.json: differs"),
    ]  # fmt: skip
    for path, offset, expected in cases:
        original = _flip(path, offset)
        try:
            code, output = _run(client, "verify", str(lake))
        finally:
            path.write_bytes(original)
        assert code == ExitCode.SOURCE, (path, output)
        assert expected in output, (path, output)
    # A deleted shard would read as fill values: its absence is reported.
    original = shard.read_bytes()
    shard.unlink()
    try:
        code, output = _run(client, "verify", str(lake))
    finally:
        shard.write_bytes(original)
    assert code == ExitCode.SOURCE and "shard objects (first: c/" in output
    # Files no manifest lists (an interrupted build) are notes, not problems.
    stray = lake / "occ" / "data" / "year=2020" / "part-stray-00000.parquet"
    stray.write_bytes(parquet.read_bytes())
    code, output = _run(client, "verify", str(lake))
    assert code == 0 and "not in the manifest" in output
