"""Walking a THREDDS client catalogue (InvCatalog 1.0) to the datasets a glob matches.

siphon parses each catalogue: its services (compound ones included), the access URLs of
each dataset, its catalogue references. What siphon does not keep, each dataset's
``dataSize`` and ``date type="modified"`` (the version an incremental build compares), is
read from the same document. Every request is bounded by the spec's ``timeout``.
"""

from __future__ import annotations

import fnmatch
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from requests.adapters import HTTPAdapter

_UNITS = {"bytes": 1, "kbytes": 1e3, "mbytes": 1e6, "gbytes": 1e9, "tbytes": 1e12}
_MAX_DEPTH = 16


@dataclass(frozen=True, order=True)
class Found:
    """One dataset of the catalogue: its access URL and what the catalogue says of it."""

    url: str
    path: str
    dap: bool
    """Read over OPeNDAP (else as a file over HTTP)."""
    size: int | None
    modified: str | None


class _Bounded(HTTPAdapter):
    """An adapter that gives every request a timeout (requests has no default one)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def _details(document: bytes) -> dict[str, tuple[int | None, str | None]]:
    """Each dataset's size in bytes and modification date, by name."""
    out: dict[str, tuple[int | None, str | None]] = {}
    for element in ET.fromstring(document).iter():
        if element.tag.split("}")[-1] != "dataset" or "name" not in element.attrib:
            continue
        size, modified = None, None
        for child in element:
            tag = child.tag.split("}")[-1]
            if tag == "dataSize" and child.text:
                factor = _UNITS.get(child.attrib.get("units", "bytes").lower(), 1)
                try:
                    size = round(float(child.text) * factor)
                except ValueError:
                    size = None
            elif tag == "date" and child.attrib.get("type") == "modified":
                modified = (child.text or "").strip() or None
        out[element.attrib["name"]] = (size, modified)
    return out


def walk(catalog: str, match: str, timeout: float) -> list[Found]:
    """The datasets below ``catalog`` (following catalogue references) whose path (the
    references' names and the dataset's, joined by ``/``) matches ``match``."""
    from collections import OrderedDict

    from siphon.catalog import TDSCatalog
    from siphon.http_util import session_manager

    adapter = _Bounded(timeout)
    session_manager.set_session_options(adapters=OrderedDict([("https://", adapter),
                                                              ("http://", adapter)]))  # fmt: skip
    session = session_manager.create_session()
    found: list[Found] = []
    seen: set[str] = set()
    pending: list[tuple[str, str, int]] = [(catalog, "", 0)]
    while pending:
        url, prefix, depth = pending.pop()
        if url in seen or depth > _MAX_DEPTH:
            continue
        seen.add(url)
        answer = session.get(url)
        answer.raise_for_status()
        details = _details(answer.content)
        parsed = TDSCatalog(url)
        for name, dataset in parsed.datasets.items():
            path = prefix + str(name).strip()
            if not fnmatch.fnmatchcase(path, match):
                continue
            access = {str(k).upper(): v for k, v in dataset.access_urls.items()}
            size, modified = details.get(str(dataset.name), (None, None))
            if "OPENDAP" in access:
                found.append(Found(access["OPENDAP"], path, True, size, modified))
            elif "HTTPSERVER" in access:
                found.append(Found(access["HTTPSERVER"], path, False, size, modified))
        for ref in parsed.catalog_refs.values():
            pending.append((ref.href, f"{prefix}{str(ref.name).strip()}/", depth + 1))
    return found
