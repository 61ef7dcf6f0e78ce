"""Deliveries as a whole (D5, D6, D7): ids reused across days, the same content in other bytes, delivery
manifests, the expected volume, and the labels of quarantined records. Each case asserts the outcome and
that nothing was lost: delivered == valid + quarantined, and a refused file stays in the landing zone."""

import csv
import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest

from ml_assets.contract import load_contract
from ml_assets.ingestion import ids
from ml_assets.ingestion.ingest import DuplicateDelivery, SourceMissing, stage_partition
from ml_assets.ingestion.status import read_status
from ml_assets.ingestion.validate import LandingFileError
from ml_assets_tests.conftest import write_contract
from ml_assets_tests.ingestion_helpers import COLUMNS, CONTRACT, Zone, csv_bytes, parquet_bytes, row, rows, text_table

D1, D2, D3 = "2026-01-05", "2026-01-06", "2026-01-07"


def assert_nothing_lost(zone: Zone, day: str) -> None:
    status = read_status(zone.lake, "raw_transactions", day)
    assert status["delivered"] == status["valid"] + status["quarantined"]
    assert len(zone.valid(day)) == status["valid"] and len(zone.quarantine(day)) == status["quarantined"]


def test_a_record_id_already_ingested_on_an_earlier_day_is_quarantined_naming_that_day(tmp_path):
    zone = Zone(tmp_path)
    zone.deliver(D1, csv_bytes(rows(50, D1)))
    zone.ingest(D1)
    reused = [row(i, D2, transaction_id=row(i, D1)["transaction_id"]) for i in (3, 7)]
    zone.deliver(D2, csv_bytes(rows(40, D2, start=100) + reused))
    report = zone.ingest(D2)
    assert report.reused_from == {D1: 2} and report.quarantined == 2 and report.delivered == 42
    index = ids.decode(zone.lake.read_bytes(ids.index_key("raw_transactions", D2)))
    assert index.tolist() == sorted(ids.hash_text(pa.array(zone.valid(D2)["transaction_id"])).tolist()), \
        "the index holds exactly the valid rows' ids"
    reasons = zone.quarantine(D2)["_reason"].tolist()
    assert all(f"was already ingested in partition {D1}" in r for r in reasons)
    assert {f"'{row(i, D1)['transaction_id']}'" in " ".join(reasons) for i in (3, 7)} == {True}
    assert_nothing_lost(zone, D2)
    # Re-ingesting the first day itself is not a reuse: its ids are its own.
    again = zone.ingest(D1)
    assert again.quarantined == 0 and again.redelivery


def _variants(records: list[dict]) -> dict[str, tuple[bytes, str]]:
    reordered = COLUMNS[::-1]
    return {
        "crlf": (csv_bytes(records, newline="\r\n"), "csv"),
        "column order": (csv_bytes(records, columns=reordered), "csv"),
        "quoting": (csv_bytes(records, quoting=csv.QUOTE_ALL), "csv"),
        "parquet": (parquet_bytes(text_table(records)), "parquet"),
        "bom": (b"\xef\xbb\xbf" + csv_bytes(records), "csv"),
    }


@pytest.mark.parametrize("variant", ["crlf", "column order", "quoting", "parquet", "bom"])
def test_the_same_content_in_other_bytes_under_another_days_name_is_refused(tmp_path, variant):
    zone = Zone(tmp_path)
    records = rows(60, D1)
    zone.deliver(D1, csv_bytes(records))
    zone.ingest(D1)
    before = zone.lake_files()
    data, ext = _variants(records)[variant]
    zone.deliver(D2, data, ext)
    with pytest.raises(DuplicateDelivery, match=rf"all 60 rows carry transaction_ids already ingested in "
                                                rf"partition\(s\) {D1} \(60 rows\)"):
        zone.ingest(D2)
    assert zone.lake_files() == before, "nothing published, nothing staged"
    assert zone.landing.exists(f"transactions/{D2}.{ext}"), "the refused file stays in the landing zone"


def test_the_same_content_twice_in_one_run_is_refused_before_anything_is_published(tmp_path):
    zone = Zone(tmp_path)
    records = rows(30, D1)
    zone.deliver(D1, csv_bytes(records))
    zone.deliver(D2, csv_bytes(records, newline="\r\n"))
    first = stage_partition("records", zone.landing, zone.lake, CONTRACT, D1, "raw_transactions", "staging/run1")
    with pytest.raises(DuplicateDelivery, match=rf"partition\(s\) {D1}"):
        stage_partition("records", zone.landing, zone.lake, CONTRACT, D2, "raw_transactions", "staging/run1",
                        in_run=[first])
    assert zone.lake.list("raw_transactions") == []


def test_the_id_index_finds_reuse_across_many_days_and_confirms_every_hash_match(tmp_path):
    zone = Zone(tmp_path)
    for d in range(1, 8):
        day = f"2026-01-{d:02d}"
        zone.deliver(day, csv_bytes(rows(200, day)))
        zone.ingest(day)
    assert len(zone.lake.list("ingestion_index/raw_transactions/record_ids-h64v1")) == 7
    new = pa.array([row(5, "2026-01-03")["transaction_id"], "tx_never_seen", row(9, "2026-01-06")["transaction_id"]])
    hashes = ids.hash_text(new)
    found = ids.reused_ids(zone.lake, "raw_transactions", "transaction_id", new, hashes, np.arange(3),
                           [f"2026-01-{d:02d}" for d in range(1, 8)])
    assert {p: r.tolist() for p, r in found.items()} == {"2026-01-03": [0], "2026-01-06": [2]}
    # A hash match is only a candidate: a forged collision (same hash, other id) is not a reuse.
    forged = {"2026-01-03": (np.sort(np.append(ids.decode(zone.lake.read_bytes(ids.index_key(
        "raw_transactions", "2026-01-03"))), hashes[1])), "raw_transactions/2026-01-03.parquet")}
    found = ids.reused_ids(zone.lake, "raw_transactions", "transaction_id", new, hashes, np.arange(3), [], forged)
    assert {p: r.tolist() for p, r in found.items()} == {"2026-01-03": [0]}


def test_a_partition_published_before_the_index_existed_is_indexed_on_first_use(tmp_path):
    zone = Zone(tmp_path)
    zone.deliver(D1, csv_bytes(rows(20, D1)))
    zone.ingest(D1)
    zone.lake.delete(ids.index_key("raw_transactions", D1))
    zone.deliver(D2, csv_bytes(rows(5, D2) + [row(1, D2, transaction_id=row(1, D1)["transaction_id"])]))
    assert zone.ingest(D2).reused_from == {D1: 1}
    assert zone.lake.exists(ids.index_key("raw_transactions", D1))


# ---- delivery manifests -----------------------------------------------------------------------
def manifest(name: str, data: bytes, rows_: int) -> bytes:
    return json.dumps({"files": {name: {"rows": rows_, "sha256": hashlib.sha256(data).hexdigest()}}}).encode()


def test_a_file_cut_at_a_row_boundary_fails_against_its_manifest(tmp_path):
    zone = Zone(tmp_path)
    full = csv_bytes(rows(100, D1))
    cut = full[: full.index(b"\n", len(full) // 2) + 1]  # ends on a newline: parses fine
    zone.deliver(D1, cut)
    zone.landing.write_bytes(f"transactions/{D1}.manifest.json", manifest(f"{D1}.csv", full, 100))
    with pytest.raises(LandingFileError, match="its manifest .* describes .* 100 rows"):
        zone.ingest(D1)
    # A manifest that matches the file but not its rows (the upstream counted wrong) fails too.
    zone.landing.write_bytes(f"transactions/{D1}.manifest.json", manifest(f"{D1}.csv", cut, 100))
    with pytest.raises(LandingFileError, match="expected 100 rows, as its manifest"):
        zone.ingest(D1)
    assert zone.lake.list("raw_transactions") == [] and zone.landing.exists(f"transactions/{D1}.csv")
    zone.deliver(D1, full)
    zone.landing.write_bytes(f"transactions/{D1}.manifest.json", manifest(f"{D1}.csv", full, 100))
    report = zone.ingest(D1)
    assert report.manifest["rows"] == 100 and report.valid == 100


@pytest.mark.parametrize("body", [b"{", b'{"files": {}}', b'{"files": {"2026-01-05.csv": {"rows": -1, "sha256": "x"}}}',
                                  b'{"files": {"2026-01-05.csv": {"rows": 1, "sha256": "nothex"}}}'])
def test_a_malformed_manifest_fails_saying_what_was_expected(tmp_path, body):
    zone = Zone(tmp_path)
    zone.deliver(D1, csv_bytes(rows(3, D1)))
    zone.landing.write_bytes(f"transactions/{D1}.manifest.json", body)
    with pytest.raises(LandingFileError, match=r'expected a manifest of the form \{"files"'):
        zone.ingest(D1)


def test_a_required_manifest_that_has_not_arrived_fails_the_partition(tmp_path):
    contract = load_contract(write_contract(tmp_path / "c.yaml", ingestion={"manifest": "required"}))
    zone = Zone(tmp_path, contract)
    zone.deliver(D1, csv_bytes(rows(3, D1)))
    with pytest.raises(SourceMissing, match=r"no delivery manifest .*ingestion.manifest: required"):
        zone.ingest(D1)


# ---- expected volume --------------------------------------------------------------------------
def test_an_empty_or_sharply_short_day_fails_the_expected_volume_but_nothing_is_lost(tmp_path):
    zone = Zone(tmp_path)
    for d in range(1, 5):
        day = f"2026-01-{d:02d}"
        zone.deliver(day, csv_bytes(rows(100 + d, day)))
        assert zone.ingest(day).volume.passed
    zone.deliver(D1, csv_bytes([]))  # header only
    volume = zone.ingest(D1).volume
    assert not volume.passed and volume.expected == 102.5 and volume.history == [104, 103, 102, 101]
    assert "0 rows, sharply short of the expected volume" in volume.description
    assert "ingestion.volume_drop_max 0.9" in volume.description
    zone.deliver(D2, csv_bytes(rows(11, D2)))
    assert zone.ingest(D2).volume.passed, "11 rows >= (1 - 0.9) x median"
    assert_nothing_lost(zone, D1)


# ---- labels -----------------------------------------------------------------------------------
def label_bytes(pairs: list[tuple[str, str]]) -> bytes:
    return ("transaction_id,is_fraud\n" + "".join(f"{i},{v}\n" for i, v in pairs)).encode()


def test_labels_of_quarantined_records_are_quarantined_with_the_records_reason(tmp_path):
    zone = Zone(tmp_path)
    records = rows(20, D1)
    records[4]["amount"] = "-3"
    zone.deliver(D1, csv_bytes(records))
    assert zone.ingest(D1).quarantined == 1
    label_day = "2026-01-08"  # delay_days 3
    pairs = [(r["transaction_id"], "0") for r in records] + [("tx_never_delivered", "1")]
    zone.deliver(label_day, label_bytes(pairs), directory="labels")
    report = zone.ingest(label_day, kind="labels")
    assert report.labels_of_quarantined == 1 and report.orphan_labels == 1
    assert report.delivered == 21 and report.valid == 20 and report.quarantined == 1
    reason = zone.quarantine(label_day, "raw_labels")["_reason"].iloc[0]
    assert f"the record '{records[4]['transaction_id']}' was quarantined at ingestion of raw_transactions {D1}" in reason
    assert "amount >= 0.0" in reason
