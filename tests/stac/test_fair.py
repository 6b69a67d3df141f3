"""Metadata for portals beside every collection: ISO 19139, DCAT-AP JSON-LD and DataCite
JSON, linked from the collection, each carrying what the collection says, validated as far
as offline schemas allow (DataCite's JSON schema; no ISO or DCAT-AP schema is offline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from catalogue_lake import _run, _spec

if TYPE_CHECKING:
    from distributed import Client

pytestmark = pytest.mark.postgres

GMD = {"gmd": "http://www.isotc211.org/2005/gmd", "gco": "http://www.isotc211.org/2005/gco",
       "gmx": "http://www.isotc211.org/2005/gmx"}  # fmt: skip
MEDIA = {"iso19139.xml": "application/vnd.iso.19139+xml", "dcat.jsonld": "application/ld+json",
         "datacite.json": "application/vnd.datacite.datacite+json"}  # fmt: skip


def _links(lake: Path, dataset: str) -> dict[str, str]:
    collection = json.loads((lake / dataset / "collection.json").read_text())
    return {link["href"].removeprefix("./"): link["type"]
            for link in collection["links"] if link["rel"] == "describedby"}  # fmt: skip


def test_every_collection_links_three_documents(lake: Path) -> None:
    for dataset in ("sst", "occ"):
        assert _links(lake, dataset) == MEDIA
        for name in MEDIA:
            assert (lake / dataset / name).stat().st_size > 0


def test_iso19139_carries_the_collection(lake: Path) -> None:
    from lxml import etree

    doc = etree.parse(str(lake / "sst" / "iso19139.xml"))
    assert doc.getroot().tag == "{http://www.isotc211.org/2005/gmd}MD_Metadata"

    def text(path: str) -> list[str]:
        return [str(v).strip() for v in doc.xpath(path, namespaces=GMD)]

    ident = "//gmd:identificationInfo/gmd:MD_DataIdentification"
    assert text(f"{ident}/gmd:citation/gmd:CI_Citation/gmd:title/gco:CharacterString/text()") == [
        "Sea temperature"
    ]
    assert text(
        "//gmd:otherConstraints/gmx:Anchor/@xlink:href".replace(
            "@xlink:href", "@*[local-name()='href']"
        )
    ) == ["https://spdx.org/licenses/CC-BY-4.0.html"]
    box = "//gmd:EX_GeographicBoundingBox"
    west = float(text(f"{box}/gmd:westBoundLongitude/gco:Decimal/text()")[0])
    collection = json.loads((lake / "sst" / "collection.json").read_text())
    assert west == pytest.approx(collection["extent"]["spatial"]["bbox"][0][0])
    urls = text("//gmd:distributionInfo//gmd:linkage/gmd:URL/text()")
    assert "./maps.zarr" in urls and "./timeseries.zarr" in urls
    lineage = text("//gmd:LI_Lineage/gmd:statement/gco:CharacterString/text()")
    assert lineage and "Converted from NetCDF files" in lineage[0]
    organisations = text("//gmd:organisationName/gco:CharacterString/text()")
    assert "Copernicus Marine" in organisations


@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
def test_dcat_is_json_ld_with_the_dcat_ap_properties(lake: Path) -> None:
    from rdflib import Graph, Literal, Namespace, URIRef

    dct = Namespace("http://purl.org/dc/terms/")
    dcat = Namespace("http://www.w3.org/ns/dcat#")
    base = (lake / "sst" / "dcat.jsonld").as_uri()
    graph = Graph().parse(data=(lake / "sst" / "dcat.jsonld").read_text(), format="json-ld",
                          publicID=base)  # fmt: skip
    datasets = list(graph.subjects(predicate=None, object=dcat.Dataset))
    assert datasets == [URIRef("https://doi.org/10.48670/moi-00027")]
    dataset = datasets[0]
    assert graph.value(dataset, dct.title) == Literal("Sea temperature")
    assert graph.value(dataset, dct.license) == URIRef("https://spdx.org/licenses/CC-BY-4.0.html")
    label = URIRef("http://www.w3.org/2000/01/rdf-schema#label")
    provenance = graph.value(graph.value(dataset, dct.provenance), label)
    assert "Converted from NetCDF files" in str(provenance)
    distributions = list(graph.objects(dataset, dcat.distribution))
    urls = {str(graph.value(d, dcat.accessURL)) for d in distributions}
    assert urls == {
        (lake / "sst" / "maps.zarr").as_uri(),
        (lake / "sst" / "timeseries.zarr").as_uri(),
    }
    assert all(graph.value(d, dct.license) for d in distributions)
    assert "POLYGON" in str(graph.value(graph.value(dataset, dct.spatial), dcat.bbox))


def test_datacite_json_is_valid_kernel_4_5(lake: Path) -> None:
    import datacite.schema45 as kernel

    for dataset, title in (("sst", "Sea temperature"), ("occ", "Occurrences")):
        doc = json.loads((lake / dataset / "datacite.json").read_text())
        errors = [e.message for e in kernel.validator.iter_errors(doc)]
        assert errors == [], dataset
        assert doc["titles"] == [{"title": title}]
        assert doc["rightsList"][0]["rightsIdentifier"] in ("CC-BY-4.0", "CC0-1.0")
        kernel.tostring(doc)  # DataCite's own JSON-to-XML mapping takes it
    sst = json.loads((lake / "sst" / "datacite.json").read_text())
    assert sst["doi"] == "10.48670/moi-00027"
    assert sst["creators"] == [{"name": "Copernicus Marine", "nameType": "Organizational"}]


def test_documents_follow_public_url_and_verify(lake: Path, tmp_path: Path, client: Client) -> None:
    from lake.spec import load_spec
    from lake.stac.catalog import write_catalogue
    from lake.storage import Root

    spec = load_spec(_spec(tmp_path, public_url="https://lake.example.org/v1/"))
    write_catalogue(Root(spec.root), spec)
    doc = json.loads((lake / "occ" / "datacite.json").read_text())
    assert doc["url"] == "https://lake.example.org/v1/occ/collection.json"
    assert {
        "https://lake.example.org/v1/occ/data/",
        "https://lake.example.org/v1/occ/table.json",
    } == {r["relatedIdentifier"] for r in doc["relatedIdentifiers"]}
    code, output = _run(client, "verify", str(lake))
    assert code == 0, output
    (lake / "occ" / "dcat.jsonld").write_text("{}")
    code, output = _run(client, "verify", str(lake))
    assert code != 0 and "occ/dcat.jsonld: differs from what the catalogue writer wrote" in output
