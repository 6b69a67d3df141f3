"""What a Darwin Core archive's EML (``eml.xml``, GBIF's EML profile) says of its dataset,
as the spec's ``metadata`` fields: title, abstract, licence, citation, keywords, creators."""

from __future__ import annotations

from typing import Any

from lake.sourcefiles import licence_of


def eml_metadata(eml: Any) -> dict[str, Any]:
    """What an archive's EML says for the catalogue (title, abstract, licence, citation,
    keywords, creators), as spec ``metadata`` fields."""
    if eml is None:
        return {}

    def texts(path: str) -> list[str]:
        return [" ".join("".join(e.itertext()).split()) for e in eml.findall(path)]

    out: dict[str, Any] = {}
    title = texts("dataset/title")
    if title and title[0]:
        out["title"] = title[0]
    abstract = " ".join(t for t in texts("dataset/abstract/para") if t) or " ".join(
        t for t in texts("dataset/abstract") if t
    )
    if abstract:
        out["description"] = abstract
    rights = texts("dataset/intellectualRights")
    links = [e.get("url", "") for e in eml.findall("dataset/intellectualRights//ulink")]
    if rights or links:
        out.update(licence_of(" ".join(links + rights)))
    citation = texts("additionalMetadata/metadata/gbif/citation")
    if citation and citation[0]:
        out["citation"] = citation[0]
    keywords = [k for k in texts("dataset/keywordSet/keyword") if k]
    if keywords:
        out["keywords"] = keywords[:20]
    providers = []
    for creator in eml.findall("dataset/creator"):
        person = " ".join("".join(creator.find("individualName").itertext()).split()) \
            if creator.find("individualName") is not None else ""  # fmt: skip
        org = (creator.findtext("organizationName") or "").strip()
        name = ", ".join(p for p in (person, org) if p)
        if name:
            url = (creator.findtext("onlineUrl") or "").strip()
            providers.append({"name": name, "roles": ["producer"], **({"url": url} if url else {})})
    if providers:
        out["providers"] = providers
    return out
