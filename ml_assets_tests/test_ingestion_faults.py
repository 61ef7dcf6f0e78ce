"""Faults while ingesting (D5, D6, O3): a full disk or any exception while staging or publishing leaves the
published lake exactly as it was, with no staging behind; a crashed run's staging is cleaned by the next
run; data errors fail at once and are never retried; nothing reports rows that were not published."""

import datetime as dt
import errno
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.contract import load_contract
from ml_assets.ingestion.ingest import (
    PublishFailed,
    clean_stale_staging,
    publish_partitions,
    stage_partition,
    status_record,
)
from ml_assets.resources import StorageResource
from ml_assets.simulate.generator import SimulationConfig, simulate
from ml_assets.storage import LocalStore, ObjectStore
from ml_assets_tests.conftest import write_contract
from ml_assets_tests.harness import Graph, check_outcomes, failure_messages, materialized_partitions
from ml_assets_tests.ingestion_helpers import COLUMNS, CONTRACT, Zone, csv_bytes, rows

DAYS = [f"2026-01-{d:02d}" for d in range(1, 7)]


def snapshot(store: LocalStore) -> dict[str, bytes]:
    return {k: store.read_bytes(k) for k in store.list("")}


class FullDiskLake(LocalStore):
    """A lake whose disk fills up after `budget` more bytes are written (ENOSPC, as the kernel says it)."""

    def __init__(self, root, budget: int):
        super().__init__(root)
        self.budget = budget

    def write_bytes(self, key: str, data: bytes) -> None:
        self.budget -= len(data)
        if self.budget < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path(key)))
        super().write_bytes(key, data)


class FailingMoveLake(LocalStore):
    """A lake whose `fail_at`-th rename during publishing raises: a crash in the middle of publishing."""

    def __init__(self, root, fail_at: int):
        super().__init__(root)
        self.fail_at, self.moves = fail_at, 0

    def move(self, src: str, dst: str) -> None:
        if not src.endswith(".json") and "/_replaced/" not in src:
            self.moves += 1
            if self.moves == self.fail_at:
                raise OSError(errno.EIO, "input/output error while publishing", dst)
        super().move(src, dst)


def _stage_all(zone: Zone, lake: ObjectStore, days: list[str], run: str):
    reports = []
    for d in days:
        reports.append(stage_partition("records", zone.landing, lake, CONTRACT, d, "raw_transactions",
                                       f"staging/{run}", in_run=reports))
    return reports


def _landing(tmp_path: Path, days: list[str], version: int = 0) -> Zone:
    zone = Zone(tmp_path)
    for i, d in enumerate(days):
        zone.deliver(d, csv_bytes(rows(300 + 10 * i + version, d)))
    return zone


@pytest.mark.parametrize("fail_at", [1, 4, 7, 11])
def test_an_exception_mid_publish_restores_every_replaced_file_and_leaves_no_staging(tmp_path, fail_at):
    zone = _landing(tmp_path, DAYS[:4])
    first = _stage_all(zone, zone.lake, DAYS[:4], "run1")
    publish_partitions(zone.lake, first, {r.partition: status_record(r, {}, "run1") for r in first})
    before = snapshot(zone.lake)
    # New deliveries of the same days (one more row each), re-ingested by a run that crashes while publishing.
    zone = _landing(tmp_path, DAYS[:4], version=1)
    lake = FailingMoveLake(tmp_path / "lake", fail_at)
    second = _stage_all(zone, lake, DAYS[:4], "run2")
    with pytest.raises(PublishFailed, match="Every file this run had published was restored") as e:
        publish_partitions(lake, second, {r.partition: status_record(r, {}, "run2") for r in second})
    assert "input/output error while publishing" in str(e.value)
    assert snapshot(zone.lake) == before, "the published lake is byte for byte what it was"
    assert not list(zone.lake.path("staging").rglob("*")), "no staged file, backup or directory left"


def test_a_full_disk_while_staging_leaves_the_lake_unchanged_and_no_staging(tmp_path):
    zone = _landing(tmp_path, DAYS[:3])
    first = _stage_all(zone, zone.lake, DAYS[:3], "run1")
    publish_partitions(zone.lake, first, {r.partition: status_record(r, {}, "run1") for r in first})
    before = snapshot(zone.lake)
    lake = FullDiskLake(tmp_path / "lake", budget=60_000)
    from ml_assets.ingestion.ingest import ingest_partition

    zone.deliver(DAYS[3], csv_bytes(rows(5000, DAYS[3])))
    with pytest.raises(OSError, match="No space left on device"):
        ingest_partition("records", zone.landing, lake, CONTRACT, DAYS[3], "raw_transactions")
    assert snapshot(zone.lake) == before and zone.lake.list("staging") == []


def _privileged() -> list[str]:
    """How this test may mount: as root, or through passwordless sudo (as scripts/test.sh installs its tools)."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    pytest.fail("a real full disk needs a 1 MiB tmpfs: run the tests as root or with passwordless sudo "
                "(scripts/test.sh needs the same to install its servers)")


def _mount_tmpfs(path: Path, size: str) -> list[str]:
    """Mount a tmpfs of `size` at `path`, writable by this process; returns the command prefix to unmount it."""
    path.mkdir(parents=True, exist_ok=True)
    prefix = _privileged()
    out = subprocess.run([*prefix, "mount", "-t", "tmpfs", "-o", f"size={size},uid={os.getuid()},gid={os.getgid()}",
                          "tmpfs", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, f"mounting a tmpfs at {path} failed: {out.stderr.strip()}"
    return prefix


@pytest.mark.slow
def test_a_real_full_disk_during_a_backfill_publishes_nothing_and_reports_nothing(tmp_path):
    """The lake on a 1 MiB tmpfs: the backfill fills it, the step fails naming the disk, the partitions are not
    recorded as materialized, the lake is as before and no staging is left (mounting needs root or passwordless
    sudo; the injected ENOSPC tests above cover the same code paths without it)."""
    mount = tmp_path / "small"
    prefix = _mount_tmpfs(mount, "1m")
    try:
        contract = load_contract(write_contract(tmp_path / "c.yaml", partitions={"start_date": "2026-01-01",
                                                                                  "end_date": "2026-01-31"}))
        simulate(tmp_path / "landing", SimulationConfig(start_date=dt.date(2026, 1, 1), days=30, n_cards=2000))
        g = Graph(contract, tmp_path, landing=tmp_path / "landing")
        g.lake_dir = mount / "lake"
        g.resources["lake"] = type(g.resources["lake"])(root=str(g.lake_dir))
        lake = LocalStore(g.lake_dir)
        with dg.instance_for_test() as instance:
            assert g.materialize([g.raw_transactions], instance, "2026-01-01").success
            before = snapshot(lake)
            result = g.materialize([g.raw_transactions], instance, "2026-01-02", "2026-01-30")
            assert not result.success
            assert "No space left on device" in failure_messages(result)
            assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
            assert materialized_partitions(instance, "raw_transactions") == {"2026-01-01"}
            assert not result.asset_materializations_for_node("raw_transactions")
        assert snapshot(lake) == before and lake.list("staging") == []
    finally:
        subprocess.run([*prefix, "umount", str(mount)], capture_output=True)


def test_the_staging_of_a_crashed_run_is_removed_by_the_next_run(tmp_path):
    zone = _landing(tmp_path, DAYS[:2])
    crashed = f"{uuid.uuid4()}"
    _stage_all(zone, zone.lake, DAYS[:2], crashed)  # staged, never published: the process was killed
    running = f"{uuid.uuid4()}"
    _stage_all(zone, zone.lake, DAYS[:1], running)
    assert len(zone.lake.list(f"staging/{crashed}")) == 6
    # A writer killed mid-write leaves a hidden temporary file, in a run that left nothing else.
    ghost = zone.lake.path("staging/ghost-run/raw_transactions/.2026-01-01.parquet.x.tmp")
    ghost.parent.mkdir(parents=True)
    ghost.write_bytes(b"partial")
    removed = clean_stale_staging(zone.lake, lambda run: run == running)
    assert removed == sorted([crashed, "ghost-run"])
    assert zone.lake.list(f"staging/{crashed}") == [] and len(zone.lake.list(f"staging/{running}")) == 3
    assert sorted(p.name for p in zone.lake.path("staging").iterdir()) == [running], "no directories left either"


class CountingLanding(LocalStore):
    reads: dict[str, int] = {}

    def read_bytes(self, key: str) -> bytes:
        CountingLanding.reads[key] = CountingLanding.reads.get(key, 0) + 1
        return super().read_bytes(key)


class CountingLandingResource(StorageResource):
    root: str

    def get_store(self) -> ObjectStore:
        return CountingLanding(self.root)


def test_a_data_error_fails_the_step_once_naming_the_file_and_column_and_is_not_retried(tmp_path):
    contract = load_contract(write_contract(tmp_path / "c.yaml", partitions={"start_date": "2026-01-01",
                                                                             "end_date": "2026-01-10"}))
    (tmp_path / "landing" / "transactions").mkdir(parents=True)
    (tmp_path / "landing" / "transactions" / "2026-01-02.csv").write_bytes(
        csv_bytes(rows(5, "2026-01-02"), columns=[*COLUMNS, "channel"]))
    CountingLanding.reads = {}
    g = Graph(contract, tmp_path, landing_resource=CountingLandingResource(root=str(tmp_path / "landing")))
    with dg.instance_for_test() as instance:
        result = g.materialize([g.raw_transactions, g.transaction_features], instance, "2026-01-02")
        assert not result.success
        errors = failure_messages(result)
        alert = g.alert_for(result, instance)
        retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert "2026-01-02.csv: expected each column named once; found column(s) ['channel'] more than once" in errors
    assert "LandingFileError" in alert["error"] and "'channel'" in alert["error"]
    assert not retries and CountingLanding.reads == {"transactions/2026-01-02.csv": 1}, "no retry of a data error"
    assert LocalStore(g.lake_dir).list("") == []
    assert check_outcomes(result) == {}, "no check result claims rows for a partition that was not published"
