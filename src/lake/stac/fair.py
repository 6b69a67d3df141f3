"""Metadata for portals, beside each collection and linked from it (``rel: describedby``):
ISO 19139 for GeoNetwork and CSW harvesting, DCAT-AP JSON-LD for data.europa.eu and EOSC,
and DataCite JSON for minting a DOI.

All three are built from the collection document, the one description of the dataset, so
they carry the same title, abstract, licence, providers, extents, distribution (the
assets), provenance (the source and the processing) and DOI or citation. ISO 19139 and the
DCAT core are written by pygeometa from one MCF record (its metadata model); the DCAT-AP
properties pygeometa leaves out (licence and format of each distribution, publisher,
provenance, identifier, WKT bbox) are added to its JSON-LD. DataCite JSON (kernel 4.5,
as DataCite's REST API takes it) has no writer in pygeometa and is mapped here.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2

    from lake.spec import Dataset, Spec
    from lake.storage import Root


@dataclass(frozen=True)
class FairDocument:
    name: str
    media_type: str
    title: str


DOCUMENTS = (
    FairDocument("iso19139.xml", "application/vnd.iso.19139+xml",
                 "ISO 19139 metadata (GeoNetwork, CSW)"),
    FairDocument("dcat.jsonld", "application/ld+json", "DCAT-AP metadata (data.europa.eu, EOSC)"),
    FairDocument("datacite.json", "application/vnd.datacite.datacite+json",
                 "DataCite metadata (DOI registration)"),
)  # fmt: skip
ISO_ROLES = {"licensor": "owner", "producer": "originator", "processor": "processor",
             "host": "distributor"}  # fmt: skip
"""STAC provider roles as ISO 19115 CI_RoleCode."""
MCF_ONLY = ("dataseturi", "url", "charset", "hierarchylevel", "additional_identifiers",
            "dataquality", "license", "revision", "datestamp", "status", "abstract",
            "identifier", "language", "topiccategory", "spatial", "temporal")  # fmt: skip
"""MCF keys pygeometa copies into its JSON-LD that DCAT-AP says otherwise (or that its
context maps wrongly: ``url`` to the dataset's ``dcat:accessURL``, ``dataseturi`` to a
second ``@id``); the DCAT-AP properties replace them."""
EU_LANGUAGE = "http://publications.europa.eu/resource/authority/language/ENG"
EU_THEME = "http://publications.europa.eu/resource/authority/data-theme/ENVI"
"""DCAT-AP's controlled vocabularies: English; the data theme Environment."""
UNKNOWN = "(:unav)"
STABLE_DATE = "2000-01-01"
CONTENT = "#content"
"""Suffix of a document's key in the document record for the digest of its content."""
"""DataCite's standard value for a required property that is not known."""


def describedby_links() -> list[dict[str, str]]:
    return [{"rel": "describedby", "href": f"./{d.name}", "type": d.media_type, "title": d.title}
            for d in DOCUMENTS]  # fmt: skip


def _url(spec: Spec, dataset: Dataset, href: str) -> str:
    """An asset's href as the metadata gives it: absolute under ``public_url`` when set."""
    if "://" in href or not spec.public_url:
        return href
    return "/".join([spec.public_url.rstrip("/"), dataset.id, href.removeprefix("./")])


@dataclass(frozen=True)
class _Facts:
    """What the three documents say, read once from the collection."""

    id: str
    title: str
    abstract: str
    license: str
    license_url: str | None
    keywords: list[str]
    bbox: list[float]
    start: str | None
    end: str | None
    providers: list[dict[str, Any]]
    lineage: str
    doi: str | None
    citation: str | None
    landing: str | None
    distribution: list[dict[str, str]]
    kind: str


def _facts(spec: Spec, dataset: Dataset, collection: dict[str, Any]) -> _Facts:
    links = {
        link.get("rel"): link for link in collection.get("links", []) if isinstance(link, dict)
    }
    providers = [p for p in collection.get("providers", []) if isinstance(p, dict)]
    lineage = " ".join(p["processing:lineage"] for p in providers if "processing:lineage" in p)
    interval = collection["extent"]["temporal"]["interval"][0]
    distribution = [
        {"name": name, "url": _url(spec, dataset, str(asset["href"])),
         "type": str(asset.get("type", "")), "title": str(asset.get("title", name))}
        for name, asset in collection.get("assets", {}).items()
        if "data" in asset.get("roles", []) or "metadata" in asset.get("roles", [])
    ]  # fmt: skip
    landing = _url(spec, dataset, "./collection.json") if spec.public_url else None
    return _Facts(
        id=dataset.id, title=collection["title"], abstract=collection["description"],
        license=collection["license"], license_url=links.get("license", {}).get("href"),
        keywords=list(collection.get("keywords") or []),
        bbox=list(collection["extent"]["spatial"]["bbox"][0]), start=interval[0],
        end=interval[1], providers=providers, lineage=lineage, doi=collection.get("sci:doi"),
        citation=collection.get("sci:citation"), landing=landing, distribution=distribution,
        kind="cube" if "cube:dimensions" in collection else "table",
    )  # fmt: skip


def _mcf(f: _Facts, datestamp: str) -> dict[str, Any]:
    """The pygeometa MCF record of the dataset."""
    contacts: dict[str, Any] = {}
    for p in f.providers:
        for role in p.get("roles", []) or ["pointOfContact"]:
            contacts.setdefault(ISO_ROLES.get(role, "pointOfContact"),
                                {"organization": p["name"], "url": p.get("url", "")})  # fmt: skip
    contacts.setdefault("pointOfContact", next(iter(contacts.values())))
    west, south, east, north = f.bbox[:4]
    temporal = [{"begin": f.start, "end": f.end}] if f.start or f.end else []
    identifiers = [{"identifier": f"https://doi.org/{f.doi}", "scheme": "DOI"}] if f.doi else []
    return {
        "mcf": {"version": "1.0"},
        "metadata": {
            "identifier": f.doi or f.id, "additional_identifiers": identifiers,
            "language": "en", "charset": "utf8", "hierarchylevel": "dataset",
            "datestamp": datestamp, "dataseturi": f.landing or (
                f"https://doi.org/{f.doi}" if f.doi else ""),
        },
        "spatial": {"datatype": "grid" if f.kind == "cube" else "vector",
                    "geomtype": "composite" if f.kind == "cube" else "point"},
        "identification": {
            "language": "en", "charset": "utf8", "title": f.title, "abstract": f.abstract,
            "topiccategory": ["oceans"],
            "rights": f.citation or f"Licence: {f.license}",
            "license": {"name": f.license, "url": f.license_url or ""},
            "url": f.landing or (f.distribution[0]["url"] if f.distribution else ""),
            "status": "onGoing",
            "dates": {"revision": datestamp},
            "extents": {"spatial": [{"bbox": [west, south, east, north], "crs": 4326}],
                        "temporal": temporal},
            "keywords": {"default": {"keywords": f.keywords or ["ocean"],
                                     "keywords_type": "theme"}},
        },
        "contact": contacts,
        "distribution": {
            d["name"]: {"url": d["url"], "type": d["type"], "name": d["title"],
                        "description": d["title"], "function": "download"}
            for d in f.distribution
        },
        "dataquality": {"scope": {"level": "dataset"}, "lineage": {"statement": f.lineage}},
    }  # fmt: skip


def iso19139(f: _Facts, datestamp: str) -> bytes:
    return render_iso19139(copy.deepcopy(_mcf(f, datestamp))).encode()


def render_iso19139(mcf: dict[str, Any]) -> str:
    """pygeometa's ISO 19139 of an MCF record, as ``ISO19139OutputSchema().write`` renders
    it, from templates compiled once per process: pygeometa sets up a new Jinja2
    environment for every record, which compiles its ISO templates again (0.4 s a
    collection, measured)."""
    from pygeometa import core

    template = _iso_environment().get_template("main.j2")
    xml = template.render(record=mcf, pygeometa_version=core.VERSION).encode("utf-8")
    return str(core.pretty_print(xml))


@functools.cache
def _iso_environment() -> jinja2.Environment:
    """The Jinja2 environment pygeometa's ``render_j2_template`` sets up for ISO 19139
    (its loader, filters and globals), made once; Jinja2 keeps the compiled templates."""
    from jinja2 import Environment, FileSystemLoader
    from pygeometa import core
    from pygeometa.schemas.iso19139 import ISO19139OutputSchema

    folder = ISO19139OutputSchema().template_dir
    env = Environment(loader=FileSystemLoader([folder, core.SCHEMAS]))
    helpers = {
        "normalize_datestring": core.normalize_datestring,
        "get_distribution_language": core.get_distribution_language,
        "get_charstring": core.get_charstring,
        "prune_distribution_formats": core.prune_distribution_formats,
        "prune_transfer_option": core.prune_transfer_option,
    }
    env.filters.update(helpers)
    env.globals.update(zip=zip, **{k: v for k, v in helpers.items()
                                   if k != "get_distribution_language"})  # fmt: skip
    return env


def prepare() -> None:
    """Import pygeometa and compile the ISO templates ahead of the first record (a build
    does this while its workers run)."""
    _iso_environment().get_template("main.j2")
    from pygeometa.schemas.dcat import DCATOutputSchema  # noqa: F401


def _wkt(bbox: list[float]) -> str:
    w, s, e, n = bbox[:4]
    return f"POLYGON(({w} {s}, {e} {s}, {e} {n}, {w} {n}, {w} {s}))"


def dcat(f: _Facts, datestamp: str) -> dict[str, Any]:
    """pygeometa's DCAT JSON-LD, with the DCAT-AP properties it leaves out."""
    import json

    from pygeometa.schemas.dcat import DCATOutputSchema

    doc: dict[str, Any] = DCATOutputSchema().write(copy.deepcopy(_mcf(f, datestamp)),
                                                   stringify=False)  # fmt: skip
    for key in MCF_ONLY:
        doc.pop(key, None)
    unique = {json.dumps(c, sort_keys=True): c for c in doc.get("contact", [])}
    doc["contact"] = list(unique.values())
    doc["@id"] = f.landing or (f"https://doi.org/{f.doi}" if f.doi else f"urn:marine-lake:{f.id}")
    doc["dct:identifier"] = f.doi or f.id
    doc["dct:description"] = f.abstract
    doc["dct:modified"] = {"@value": datestamp, "@type": "xsd:date"}
    doc["dct:language"] = {"@id": EU_LANGUAGE}
    doc["dcat:theme"] = {"@id": EU_THEME}
    if f.landing:
        doc["dcat:landingPage"] = {"@id": f.landing}
    license_ref = {"@id": f.license_url} if f.license_url else f.license
    doc["dct:license"] = license_ref
    publisher = next((p for p in f.providers if {"licensor", "host"} & set(p.get("roles", []))),
                     None) or next((p for p in f.providers), None)  # fmt: skip
    if publisher is not None:
        doc["dct:publisher"] = {"@type": "foaf:Agent", "foaf:name": publisher["name"],
                                **({"foaf:homepage": {"@id": publisher["url"]}}
                                   if publisher.get("url") else {})}  # fmt: skip
    doc["dct:provenance"] = {"@type": "dct:ProvenanceStatement", "rdfs:label": f.lineage}
    box = {"@value": _wkt(f.bbox), "@type": "gsp:wktLiteral"}
    doc["dct:spatial"] = {"@type": "dct:Location", "dcat:bbox": box}
    period: dict[str, Any] = {"@type": "dct:PeriodOfTime"}
    for key, value in (("dcat:startDate", f.start), ("dcat:endDate", f.end)):
        if value:
            period[key] = {"@value": value, "@type": "xsd:dateTime"}
    doc["dct:temporal"] = period
    if f.citation:
        doc["dct:bibliographicCitation"] = f.citation
    doc["distribution"] = [
        {"@type": "dcat:Distribution", "dcat:accessURL": {"@id": d["url"]},
         "dct:title": d["title"], "dcat:mediaType": d["type"], "dct:format": d["type"],
         "dct:license": license_ref}
        for d in f.distribution
    ]  # fmt: skip
    return doc


def datacite(f: _Facts, datestamp: str) -> dict[str, Any]:
    """DataCite kernel 4.5 JSON, as DataCite's REST API takes it (``attributes``)."""
    producers = [p for p in f.providers if {"producer", "licensor"} & set(p.get("roles", []))]
    creators = [{"name": p["name"], "nameType": "Organizational"} for p in producers]
    publisher = next((p["name"] for p in f.providers
                      if {"host", "licensor"} & set(p.get("roles", []))), UNKNOWN)  # fmt: skip
    # DataCite's (:unav) stands for any property not known; kernel 4.5 takes it as a name.
    west, south, east, north = f.bbox[:4]
    rights: dict[str, str] = {"rights": f.license}
    if f.license_url:
        rights["rightsUri"] = f.license_url
    if f.license != "other" and " " not in f.license:
        rights.update(rightsIdentifier=f.license, rightsIdentifierScheme="SPDX",
                      schemeUri="https://spdx.org/licenses/")  # fmt: skip
    doc: dict[str, Any] = {
        "types": {"resourceTypeGeneral": "Dataset",
                  "resourceType": "Zarr v3 cube" if f.kind == "cube" else "GeoParquet table"},
        "creators": creators or [{"name": UNKNOWN}],
        "titles": [{"title": f.title}],
        "publisher": {"name": publisher},
        "publicationYear": datestamp[:4],
        "subjects": [{"subject": k} for k in f.keywords],
        "dates": [{"date": datestamp, "dateType": "Updated"}],
        "language": "en",
        "alternateIdentifiers": [{"alternateIdentifier": f.id,
                                  "alternateIdentifierType": "marine-lake dataset id"}],
        "relatedIdentifiers": [
            {"relatedIdentifier": d["url"], "relatedIdentifierType": "URL",
             "relationType": "HasPart", "resourceTypeGeneral": "Dataset"}
            for d in f.distribution if "://" in d["url"]
        ],
        "formats": sorted({d["type"] for d in f.distribution if d["type"]}),
        "rightsList": [rights],
        "descriptions": [{"description": f.abstract, "descriptionType": "Abstract"},
                         {"description": f.lineage, "descriptionType": "Methods"}],
        "geoLocations": [{"geoLocationBox": {
            "westBoundLongitude": west, "eastBoundLongitude": east,
            "southBoundLatitude": south, "northBoundLatitude": north}}],
        "schemaVersion": "http://datacite.org/schema/kernel-4",
    }  # fmt: skip
    if f.start or f.end:
        doc["dates"].append({"date": f"{f.start or ''}/{f.end or ''}", "dateType": "Collected"})
    if f.doi:
        doc["doi"] = f.doi
    if f.landing:
        doc["url"] = f.landing
    if f.citation:
        doc["descriptions"].append({"description": f.citation, "descriptionType": "Other"})
    return doc


def write_fair(root: Root, spec: Spec, dataset: Dataset,
               collection: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Write the three documents beside the collection when what they say changed.

    Each is dated by the day it last changed: whether it did is decided on its content
    with a fixed date (its digest kept in the catalogue's document record), so a rerun
    the next day writes nothing. Each new digest is recorded as accepted before the
    document is written, as for every catalogue document. Returns the digest of each
    document by path, for the record the catalogue writes last."""
    import hashlib
    from datetime import UTC, datetime

    from lake.stac import digests

    same_day = fair_documents(spec, dataset, collection, STABLE_DATE)
    recorded = digests.read_documents(root)
    written: dict[str, Any] = {}
    changed: dict[str, str] = {}  # path -> digest of its content with the fixed date
    for name, content in same_day.items():
        path = f"{dataset.id}/{name}"
        stable = hashlib.sha256(content).hexdigest()
        if recorded.get(f"{path}{CONTENT}") == stable and root.fs().exists(root.path(path)):
            written[path] = recorded.get(path)
        else:
            changed[path] = stable
    if not changed:
        return written
    today = datetime.now(UTC).date().isoformat()
    documents = fair_documents(spec, dataset, collection, today)
    data = {path: documents[path.rsplit("/", 1)[-1]] for path in changed}
    for path, stable in changed.items():
        written[path] = hashlib.sha256(data[path]).hexdigest()
        recorded[path] = digests.accepted(recorded.get(path), written[path])
        recorded[f"{path}{CONTENT}"] = stable
    digests.write_documents(root, recorded)  # accepted before any of them is written
    root.put_many({root.path(path): body for path, body in data.items()})
    return written


def fair_documents(spec: Spec, dataset: Dataset, collection: dict[str, Any],
                   datestamp: str) -> dict[str, bytes]:  # fmt: skip
    """The three documents by file name, dated ``datestamp`` (``YYYY-MM-DD``)."""
    import json

    f = _facts(spec, dataset, collection)

    def dump(doc: dict[str, Any]) -> bytes:
        return json.dumps(doc, indent=1, ensure_ascii=False).encode()

    return {"iso19139.xml": iso19139(f, datestamp), "dcat.jsonld": dump(dcat(f, datestamp)),
            "datacite.json": dump(datacite(f, datestamp))}  # fmt: skip
