"""Ingestion throughput, file -> lake, project vs anchor, in one run (issue 10).

    python bench/ingest_throughput.py [--rows 1000000] [--repeat 3] [--history-days 0] [--profile]

Builds one landing CSV of `--rows` transactions of one day (simulated days concatenated, ids
made unique, a realistic sprinkling of bad rows), then times, best of `--repeat`:

- project: `ingest_partition` end to end - read the landing file, validate every value against
  the contract (exact parsing, quarantine with reasons, ids vs the id index), write the valid
  and quarantined rows as Parquet, publish with the ingestion record;
- anchor: the naive pandera pipeline with the same rules - `pd.read_csv` (pyarrow engine, types
  inferred), a pandera schema with coercion, `validate(lazy=True)`, failing rows split off, both
  parts written with `to_parquet` (silently stripping, rounding and re-typing as pandas does).

Both quarantine the same rows (asserted). Prints rows/s (wall and CPU time of this process) and
the ratio. On a shared machine the CPU figure says what an idle machine would do; wall time is
what this run got (the load average is printed).

`--history-days N` first publishes N synthetic days of `--rows` record ids into the id index, so
the cost of checking a new day's ids against N days of history is part of the project's figure.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa

from ml_assets.contract import Contract, load_contract
from ml_assets.ingestion import ids
from ml_assets.ingestion.ingest import ingest_partition, lake_key
from ml_assets.simulate.generator import SimulationConfig, simulate
from ml_assets.storage import LocalStore, table_to_parquet_bytes

DAY = "2026-02-01"


def landing_csv(rows: int, work: Path) -> bytes:
    """About `rows` simulated transactions as one day's CSV delivery (a few rows quarantinable)."""
    days = max(1, round(rows / 60_000))
    sim = simulate(work / "sim", SimulationConfig(start_date=dt.date(2026, 1, 1), days=days, n_cards=40_000))
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in sim.transaction_files]
    df = pd.concat(frames, ignore_index=True)
    df = pd.concat([df] * -(-rows // len(df)), ignore_index=True).head(rows)
    df["transaction_id"] = [f"tx_{i:09d}" for i in range(len(df))]
    df["event_timestamp"] = DAY + df["event_timestamp"].str[10:]  # every record inside the partition's day
    # A realistic sprinkling of bad rows, so the failure-case path is timed too.
    bad = df.sample(n=max(1, rows // 10_000), random_state=1).index
    df.loc[bad[::2], "amount"] = "-1"
    df.loc[bad[1::2], "channel"] = "carrier_pigeon"
    return df.to_csv(index=False).encode()


def anchor_schema(contract: Contract) -> pandera.DataFrameSchema:
    dtypes = {"string": str, "category": str, "float": "float64", "int": "Int64", "bool": "boolean",
              "datetime": pd.DatetimeTZDtype("ns", "UTC")}
    columns = {}
    for name, spec in contract.columns.items():
        checks = []
        if spec.min is not None:
            checks.append(pandera.Check.ge(spec.min))
        if spec.max is not None:
            checks.append(pandera.Check.le(spec.max))
        if spec.allowed is not None:
            checks.append(pandera.Check.isin(spec.allowed))
        columns[name] = pandera.Column(dtypes[spec.dtype], checks=checks, nullable=spec.nullable, unique=spec.unique,
                                       coerce=True, report_duplicates="exclude_first")
    return pandera.DataFrameSchema(columns)


def anchor_ingest(data: bytes, contract: Contract, out: Path) -> tuple[int, int]:
    """The naive pandera pipeline: pandas reads (pyarrow engine, types inferred), pandera checks the same
    rules (coercing what inference left), the failing rows are split off, both parts written with
    to_parquet. Returns (valid, quarantined)."""
    df = pd.read_csv(io.BytesIO(data), engine="pyarrow")
    schema = anchor_schema(contract)
    try:
        valid = schema.validate(df, lazy=True)
        bad = pd.Index([])
    except pandera.errors.SchemaErrors as err:
        bad = pd.Index(err.failure_cases["index"].dropna().unique())
        valid = err.data.drop(index=bad)  # the coerced frame, without the failing rows
    quarantine = df.loc[bad]
    valid.to_parquet(out / "valid.parquet", index=False, compression="zstd")
    quarantine.to_parquet(out / "quarantine.parquet", index=False, compression="zstd")
    return len(valid), len(quarantine)


def timed(fn, repeat: int):
    """Best of `repeat`: ((wall seconds, CPU seconds of this process), result)."""
    best, out = (float("inf"), float("inf")), None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - w0, time.process_time() - c0))
    return best, out


def seed_history(lake: LocalStore, days: int, rows: int) -> None:
    """`days` published partitions of `rows` ids each, as the id index sees them (hashes + an id column)."""
    rng = np.random.default_rng(0)
    for i in range(days):
        day = (dt.date.fromisoformat(DAY) - dt.timedelta(days=i + 1)).isoformat()
        lake.write_bytes(ids.index_key("raw_transactions", day), ids.encode(np.sort(rng.integers(
            0, 2**64 - 1, size=rows, dtype=np.uint64))))
        lake.write_bytes(lake_key("raw_transactions", day), table_to_parquet_bytes(
            pa.table({"transaction_id": pa.array([f"old_{i}_0"])})))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--history-days", type=int, default=0, help="days of 1M-id history in the id index")
    ap.add_argument("--profile", action="store_true", help="print the top functions of one project ingest")
    args = ap.parse_args()
    contract = load_contract()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = landing_csv(args.rows, work)
        landing = LocalStore(work / "landing")
        landing.write_bytes(f"transactions/{DAY}.csv", data)
        lake = LocalStore(work / "lake")
        if args.history_days:
            seed_history(lake, args.history_days, args.rows)
        t_project, report = timed(lambda: ingest_partition("records", landing, lake, contract, DAY,
                                                           "raw_transactions"), args.repeat)
        (work / "anchor").mkdir()
        t_anchor, (a_valid, a_quarantined) = timed(lambda: anchor_ingest(data, contract, work / "anchor"),
                                                   args.repeat)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            ingest_partition("records", landing, lake, contract, DAY, "raw_transactions")
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(30)
            print(out.getvalue())
    n = report.delivered
    assert report.delivered == report.valid + report.quarantined == args.rows
    assert (report.valid, report.quarantined) == (a_valid, a_quarantined), "project and anchor disagree"
    load = os.getloadavg()
    print(f"rows: {n:,} ({len(data) / 1e6:.0f} MB CSV), quarantined {report.quarantined:,}; best of {args.repeat}; "
          f"id history {args.history_days} day(s); load average {load[0]:.2f} on {os.cpu_count()} cores")
    print(f"  {'file -> lake':44s} {'wall s':>7s} {'rows/s (wall)':>14s} {'CPU s':>7s} {'rows/s (CPU)':>14s}")
    for name, (wall, cpu) in [("project (Arrow, exact parsing, id index)", t_project),
                              ("anchor (pandas + pandera, naive)", t_anchor)]:
        print(f"  {name:44s} {wall:7.3f} {n / wall:14,.0f} {cpu:7.3f} {n / cpu:14,.0f}")
    print(f"  {'ratio project / anchor':44s} {'':7s} {t_anchor[0] / t_project[0]:13.2f}x {'':7s} "
          f"{t_anchor[1] / t_project[1]:13.2f}x")


if __name__ == "__main__":
    main()
