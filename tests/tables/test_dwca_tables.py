"""Darwin Core archives as GeoParquet: the real OBIS archive of ``../shared/data/real``
and generated archives of each shape (occurrence core, event core with an occurrence
extension and a parentEventID hierarchy, declared encodings, quotes and defaults)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import pandas as pd
import pytest

import lake
from helpers import SHARED, build_on, file_table_spec
from lake.errors import SourceError
from lake.spec import parse_spec
from lake.tables.isodates import parse

if TYPE_CHECKING:
    from distributed import Client

pytestmark = pytest.mark.distributed
ARCHIVE = SHARED / "data" / "real" / "occurrence" / "dwca-macrobenthos-v12.0.zip"
DWC = "http://rs.tdwg.org/dwc/terms/"


def _spec(tmp: Path, dwca: Any, **table: Any) -> lake.Spec:
    return file_table_spec(tmp, "occ", "CC-BY-4.0", dwca=dwca, **table)


def _rows(tmp: Path) -> gpd.GeoDataFrame:
    return gpd.read_parquet(tmp / "lake" / "occ" / "data")


def test_the_real_obis_archive(
    tmp_path: Path, client: Client, shared_data: Path, schema_registry: object
) -> None:
    """Its own text `year` column beside the year partition, no eventDate, and invalid
    coordinates: every row comes back, geopandas reads the table, what failed is counted."""
    report = build_on(client, _spec(tmp_path, str(ARCHIVE)))
    (table,) = report.datasets
    with zipfile.ZipFile(ARCHIVE) as archive, archive.open("occurrence.txt") as handle:
        source = pd.read_csv(handle, sep="\t", dtype=str, keep_default_na=False)
    rows = _rows(tmp_path)
    assert table.holds == len(rows) == len(source)
    assert sorted(rows["occurrenceID"]) == sorted(source["id"])
    assert "year_source" in rows.columns  # the archive's text year, beside the partition
    by_id = rows.set_index("occurrenceID")
    for column in ("scientificName", "year", "locality", "basisOfRecord"):
        if column in source.columns:
            name = "year_source" if column == "year" else column
            assert by_id.loc[source["id"], name].fillna("").tolist() == source[column].tolist()
    assert any("not ISO 8601" in note for note in table.notes)
    assert any("not numbers" in note for note in table.notes)
    assert table.detail.invalid == rows.geometry.isna().sum() > 0
    assert set(rows["year"].astype(str)) >= {"none", "1956"}
    assert lake.verify(report.root).ok
    assert lake.validate(report.root, schemas=SHARED / "schemas").ok


def _archive(path: Path, files: dict[str, str], meta: str) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta.xml", meta)
        for name, text in files.items():
            z.writestr(name, text.encode("latin-1") if name.endswith(".latin1") else text)


def _fields(terms: list[str], first: int = 1) -> str:
    return "".join(f'<field index="{i}" term="{DWC}{t}"/>' for i, t in enumerate(terms, first))


def test_event_core_with_occurrences_and_a_hierarchy(tmp_path: Path, client: Client) -> None:
    """Occurrences take date, coordinates and depth from their nearest event that has
    them; an occurrence's own value wins; defaults fill a term without a column."""
    events = ("id\teventID\tparentEventID\teventDate\tdecimalLatitude\tdecimalLongitude\t"
              "minimumDepthInMeters\n"
              "cruise\tcruise\t\t2019-05/2019-06\t\t\t\n"
              "st1\tst1\tcruise\t\t54.1\t3.2\t10\n"
              "st1-grab\tst1-grab\tst1\t2019-05-14T10:00Z\t\t\t\n")  # fmt: skip
    occurrences = ("coreid\toccurrenceID\tscientificName\teventDate\n"
                   "st1-grab\to1\tAbra alba\t\n"
                   "st1-grab\to2\tNephtys hombergii\t2019-05-15\n"
                   "cruise\to3\tGadus morhua\t\n")  # fmt: skip
    core = _fields(["eventID", "parentEventID", "eventDate", "decimalLatitude",
                    "decimalLongitude", "minimumDepthInMeters"])  # fmt: skip
    ext = _fields(["occurrenceID", "scientificName", "eventDate"])
    meta = f"""<archive xmlns="http://rs.tdwg.org/dwc/text/">
      <core rowType="{DWC}Event" fieldsTerminatedBy="\\t" ignoreHeaderLines="1" encoding="UTF-8">
        <files><location>event.txt</location></files><id index="0"/>{core}</core>
      <extension rowType="{DWC}Occurrence" fieldsTerminatedBy="\\t" ignoreHeaderLines="1"
                 encoding="UTF-8">
        <files><location>occurrence.txt</location></files><coreid index="0"/>{ext}
        <field term="{DWC}basisOfRecord" default="HumanObservation"/></extension>
    </archive>"""
    _archive(tmp_path / "events.zip", {"event.txt": events, "occurrence.txt": occurrences}, meta)
    report = build_on(client, _spec(tmp_path, str(tmp_path / "events.zip")))
    rows = _rows(tmp_path).set_index("occurrenceID").sort_index()
    assert report.datasets[0].holds == 3
    assert rows["eventID"].tolist() == ["st1-grab", "st1-grab", "cruise"]
    assert rows["decimalLatitude"].tolist()[:2] == [54.1, 54.1]  # from st1, two levels up
    assert rows["minimumDepthInMeters"].tolist()[:2] == [10.0, 10.0]
    assert str(rows.loc["o1", "time"]) == "2019-05-14 10:00:00+00:00"  # from the grab
    assert str(rows.loc["o2", "time"]) == "2019-05-15 00:00:00+00:00"  # its own
    assert str(rows.loc["o3", "time_end"]) == "2019-06-30 23:59:59.999999+00:00"
    assert rows.loc["o3"].geometry is None  # the cruise has no position
    assert set(rows["basisOfRecord"]) == {"HumanObservation"}


EMOF = "http://rs.iobis.org/obis/terms/ExtendedMeasurementOrFact"


def test_measurements_are_a_second_table_of_the_collection(
    tmp_path: Path, client: Client, schema_registry: object
) -> None:
    """eMoF rows: a second GeoParquet table below the dataset, each row with its event's
    date and position; the collection describes both tables; verify checks both."""
    events = ("id\teventID\tparentEventID\teventDate\tdecimalLatitude\tdecimalLongitude\n"
              "st1\tst1\t\t2019-05-14\t54.1\t3.2\n"
              "st1-grab\tst1-grab\tst1\t\t\t\n"
              "st2\tst2\t\t2020-06-01\t55.0\t4.0\n")  # fmt: skip
    occurrences = "coreid\toccurrenceID\tscientificName\nst1-grab\to1\tAbra alba\n"
    measurements = ("coreid\toccurrenceID\tmeasurementType\tmeasurementValue\tmeasurementUnit\n"
                    "st1-grab\to1\tabundance\t12\tind/m2\n"
                    "st1\t\ttemperature\t8.5\tdegC\n"
                    "st2\t\tsalinity\t34.9\tPSU\n")  # fmt: skip
    core = _fields(["eventID", "parentEventID", "eventDate", "decimalLatitude",
                    "decimalLongitude"])  # fmt: skip
    head = 'fieldsTerminatedBy="\\t" ignoreHeaderLines="1" encoding="UTF-8"'
    meta = f"""<archive xmlns="http://rs.tdwg.org/dwc/text/">
      <core rowType="{DWC}Event" {head}><files><location>event.txt</location></files>
        <id index="0"/>{core}</core>
      <extension rowType="{DWC}Occurrence" {head}><files><location>occ.txt</location></files>
        <coreid index="0"/>{_fields(["occurrenceID", "scientificName"])}</extension>
      <extension rowType="{EMOF}" {head}><files><location>emof.txt</location></files>
        <coreid index="0"/>{_fields(["occurrenceID", "measurementType", "measurementValue",
                                     "measurementUnit"])}</extension>
    </archive>"""  # fmt: skip
    _archive(tmp_path / "emof.zip", {"event.txt": events, "occ.txt": occurrences,
                                     "emof.txt": measurements}, meta)  # fmt: skip
    spec = _spec(tmp_path, str(tmp_path / "emof.zip"))
    report = build_on(client, spec)
    assert [(d.id, d.holds) for d in report.datasets] == [("occ", 1), ("occ/measurements", 3)]
    rows = gpd.read_parquet(tmp_path / "lake" / "occ" / "measurements" / "data")
    rows = rows.set_index("measurementType").sort_index()
    assert rows.loc["abundance", "eventID"] == "st1-grab"
    assert rows.loc["abundance", "decimalLatitude"] == 54.1  # from st1, up the hierarchy
    assert str(rows.loc["salinity", "time"]) == "2020-06-01 00:00:00+00:00"
    assert rows["measurementValue"].tolist() == ["12", "34.9", "8.5"]  # the archive's text
    assert sorted(rows["year"].astype(str)) == ["2019", "2019", "2020"]
    collection = json.loads((tmp_path / "lake" / "occ" / "collection.json").read_text())
    assert [t["name"] for t in collection["table:tables"]] == ["occ", "measurements"]
    assert collection["assets"]["measurements"]["table:row_count"] == 3
    assert collection["assets"]["measurements"]["href"] == "./measurements/data/"
    catalog = json.loads((tmp_path / "lake" / "catalog.json").read_text())
    assert [link["href"] for link in catalog["links"] if link["rel"] == "child"] == [
        "./occ/collection.json"]  # fmt: skip
    checked = lake.verify(report.root)
    assert checked.ok and not checked.notes, (checked.problems, checked.notes)
    assert lake.validate(report.root, schemas=SHARED / "schemas").ok
    (tmp_path / "lake" / "occ" / "measurements" / "table.json").write_text(
        (tmp_path / "lake" / "occ" / "measurements" / "table.json").read_text()
        .replace('"rows": 3', '"rows": 4'))  # fmt: skip
    assert not lake.verify(report.root).ok  # the second table's files are checked
    again = build_on(client, spec)
    assert [d.id for d in again.datasets] == ["occ", "occ/measurements"]


def test_declared_encoding_quotes_and_delimiter(tmp_path: Path, client: Client) -> None:
    text = (
        '"id","scientificName","locality","decimalLatitude","decimalLongitude","eventDate"\n'
        '"a1","Zostera marina","Baie de Morlaix, Finistère","48.7","-3.9","2001"\n'
    )
    meta = f"""<archive xmlns="http://rs.tdwg.org/dwc/text/">
      <core rowType="{DWC}Occurrence" fieldsTerminatedBy="," fieldsEnclosedBy='"'
            ignoreHeaderLines="1" encoding="ISO-8859-1">
        <files><location>occ.latin1</location></files><id index="0"/>
        {_fields(["scientificName", "locality", "decimalLatitude", "decimalLongitude",
                  "eventDate"])}</core></archive>"""  # fmt: skip
    _archive(tmp_path / "latin.zip", {"occ.latin1": text}, meta)
    build_on(client, _spec(tmp_path, str(tmp_path / "latin.zip")))
    rows = _rows(tmp_path)
    assert rows["locality"].tolist() == ["Baie de Morlaix, Finistère"]
    assert rows["occurrenceID"].tolist() == ["a1"] and rows["year"].tolist() == [2001]


def test_bad_archives(tmp_path: Path, client: Client) -> None:
    meta = f"""<archive xmlns="http://rs.tdwg.org/dwc/text/">
      <core rowType="{DWC}Occurrence" fieldsTerminatedBy="\\t" ignoreHeaderLines="1"
            encoding="UTF-8">
        <files><location>missing.txt</location></files><id index="0"/>
        {_fields(["scientificName"])}</core></archive>"""
    _archive(tmp_path / "missing.zip", {}, meta)
    with pytest.raises(SourceError, match=r"missing\.txt: is named by meta\.xml but is not in"):
        build_on(client, _spec(tmp_path, str(tmp_path / "missing.zip")))

    _archive(tmp_path / "bare.zip", {"missing.txt": "id\tscientificName\n"},
             meta.replace('encoding="UTF-8"', ""))  # fmt: skip
    with pytest.raises(SourceError, match=r"meta\.xml: does not describe the archive") as info:
        build_on(client, _spec(tmp_path, str(tmp_path / "bare.zip")))
    assert "encoding" in info.value.fix

    whole = tmp_path / "whole.zip"
    _archive(whole, {"occ.txt": "id\tscientificName\na\tAbra alba\n"},
             meta.replace("missing.txt", "occ.txt"))  # fmt: skip
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[:-40])
    with pytest.raises(SourceError, match="cannot be read as a Darwin Core archive") as info:
        build_on(client, _spec(tmp_path, str(cut)))
    assert str(cut) in info.value.subject
    assert not (tmp_path / "lake" / "occ" / "table.json").exists()


def test_iso_8601_dates() -> None:
    def text(value: str) -> list[str] | None:
        got = parse(value)
        return None if got is None else [d.isoformat() for d in got]

    assert text("2010") == ["2010-01-01T00:00:00+00:00", "2010-12-31T23:59:59.999999+00:00"]
    assert text("2010-02") == ["2010-02-01T00:00:00+00:00", "2010-02-28T23:59:59.999999+00:00"]
    assert text("2010-05-03T10:15:30+02:00") == ["2010-05-03T08:15:30+00:00"] * 2
    assert text("2010-05-03/10") == ["2010-05-03T00:00:00+00:00",
                                     "2010-05-10T23:59:59.999999+00:00"]  # fmt: skip
    assert text("2010-05-10/2010-05-03") is None  # an interval that ends before it starts
    for bad in ("1961 & 1964", "2010-02-30", "spring 2010", ""):
        assert text(bad) is None


def test_an_archive_alone_fills_the_catalogue_from_its_eml(
    tmp_path: Path, client: Client, shared_data: Path
) -> None:
    """`table: {dwca: ...}` and nothing else: title, licence, citation and creators come
    from eml.xml."""
    spec = parse_spec({"root": str(tmp_path / "lake"),
                       "datasets": [{"id": "occ", "table": {"dwca": str(ARCHIVE)}}]},
                      "test-spec.yaml", tmp_path)  # fmt: skip
    report = build_on(client, spec)
    collection = json.loads((tmp_path / "lake" / "occ" / "collection.json").read_text())
    assert collection["title"].startswith("Antarctic macrobenthic communities")
    assert collection["license"] == "ODC-By-1.0"
    assert collection["sci:citation"].startswith("Gutt J")
    assert any("Alfred Wegener Institute" in p["name"] for p in collection["providers"])
    assert report.datasets[0].holds == 861


def test_licence_texts() -> None:
    from lake.sourcefiles import licence_of

    eml = "made available under the Open Data Commons Attribution License: " \
        "http://www.opendatacommons.org/licenses/by/1.0/"  # fmt: skip
    assert licence_of(eml) == {"license": "ODC-By-1.0"}
    assert licence_of("Creative Commons Attribution 4.0 (CC BY 4.0)") == {"license": "CC-BY-4.0"}
    assert licence_of("see https://marine.copernicus.eu/licence.") == {
        "license": "other", "license_url": "https://marine.copernicus.eu/licence"}  # fmt: skip
    assert licence_of("may be used without restriction") == {}


def test_an_occurrence_takes_a_group_whole_from_its_event() -> None:
    """Date terms are one group: an occurrence with none of them takes all of its event's
    (not its event's eventDate beside its own empty year), one with any keeps its own."""
    import pyarrow as pa

    from lake.tables.dwca import LINK, _with_events

    occurrences = pa.table({LINK: ["e1", "e1"], "occurrenceID": ["o1", "o2"],
                            "eventDate": ["", "2021-03-04"], "year": ["", ""]})  # fmt: skip
    events = pa.table({LINK: ["e1"], "eventDate": ["2020-06"], "year": ["2020"],
                       "decimalLatitude": ["54.1"]})  # fmt: skip
    joined = _with_events(occurrences, events).to_pydict()
    assert joined["eventDate"] == ["2020-06", "2021-03-04"]
    assert joined["year"] == ["2020", ""]
    assert joined["decimalLatitude"] == ["54.1", "54.1"]
