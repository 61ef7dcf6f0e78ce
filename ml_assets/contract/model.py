"""The dataset contract: a YAML file parsed into typed, validated settings.

Every threshold and dataset-specific name the pipeline uses comes from here, so a
second dataset is onboarded by writing a contract, not by changing code.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_CONTRACT = Path(__file__).with_name("card_transactions.yaml")

DType = Literal["string", "int", "float", "bool", "category", "datetime"]
AggFunction = Literal["count", "sum", "mean", "max", "min"]
DerivedOp = Literal["not_equal", "equal", "hour", "day_of_week"]

ID_DTYPES = ("string", "category")
_WINDOW = re.compile(r"^(\d+)([mhd])$")


class ContractError(ValueError):
    """The contract file is missing, unreadable or malformed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    dtype: DType
    nullable: bool = False
    unique: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if self.allowed is not None and self.dtype not in ("category", "string"):
            raise ValueError(f"'allowed' only applies to category/string columns, not {self.dtype}")
        if (self.min is not None or self.max is not None) and self.dtype not in ("int", "float"):
            raise ValueError(f"'min'/'max' only apply to numeric columns, not {self.dtype}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Records(_Strict):
    dir: str
    record_id: str
    entity: str
    event_timestamp: str


class Labels(_Strict):
    dir: str
    column: str
    positive: int = 1
    delay_days: int = Field(ge=0)


class Partitions(_Strict):
    start_date: dt.date
    end_date: dt.date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Partitions:
        if self.end_date is not None and self.end_date <= self.start_date:
            raise ValueError("end_date must be after start_date")
        return self


class Derived(_Strict):
    name: str
    op: DerivedOp
    args: list[str]


class Aggregate(_Strict):
    column: str
    functions: list[AggFunction]
    windows: list[str]

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for w in value:
            if not _WINDOW.match(w):
                raise ValueError(f"window {w!r} is not of the form <n>m, <n>h or <n>d")
        return value


class Features(_Strict):
    passthrough: list[str] = []
    derived: list[Derived] = []
    aggregates: list[Aggregate] = []
    ttl_days: int = Field(default=8, ge=1)


class Slices(_Strict):
    sensitive_attribute: str | None = None
    declared: list[str] = []


class Golden(_Strict):
    version: str
    # entity: reserved entities over the golden window, training never sees those entities nor those days;
    # time: every entity over the golden window, training only sees days outside it (for datasets with one or
    # a handful of entities: a single market, a single sensor).
    holdout: Literal["entity", "time"] = "entity"
    entity_fraction: float = Field(gt=0, lt=1)
    window_days: int = Field(ge=1)
    # Tiny days: the window grows backwards, a day at a time, until each class has min_per_class examples, up to
    # this many days (None: window_days is a hard limit).
    max_window_days: int | None = Field(default=None, ge=1)
    min_per_class: int = Field(ge=1)
    negatives_per_positive: int = Field(ge=1)
    seed: int = 7

    @model_validator(mode="after")
    def _window(self) -> Golden:
        if self.max_window_days is not None and self.max_window_days < self.window_days:
            raise ValueError(f"max_window_days ({self.max_window_days}) is smaller than window_days "
                             f"({self.window_days})")
        return self


class Datasets(_Strict):
    golden: Golden
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    # Retraining learns from the last N labelled days before the golden window (None: all labelled history), so a
    # model retrained after drift learns the world as it is now, not as it was on day one.
    training_window_days: int | None = Field(default=None, ge=1)


class Training(_Strict):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    hidden: list[int] = [64, 32]
    seed: int = 42
    nproc_per_node: int = Field(default=2, ge=1)
    checkpoint_every: int = Field(default=1, ge=1)
    expected_minutes: float = Field(default=5, gt=0)
    overtime_factor: float = Field(default=1.5, gt=1)   # T3: alert when a run passes this x expected
    deadline_factor: float = Field(default=2.0, gt=1)   # T2: kill the run (and its pods) at this x expected


class Gates(_Strict):
    precision_min: float
    recall_min: float
    roc_auc_min: float
    auc_tolerance: float = 0.005
    relative_regression_max: float = 0.05
    bootstrap_resamples: int = Field(default=200, ge=100)
    latency_p99_ms: float = 50
    latency_requests: int = 100
    disparate_impact_min: float = 0.8


class Drift(_Strict):
    """M1, M2, M5, M6: how drift is measured and judged (drift_report)."""

    psi_watch: float = 0.1
    psi_act: float = 0.2
    # M5: a day-to-day jump of PSI >= psi_bug right after a stable day is a step, which points to a bug. It is
    # judged only when both days hold min_rows rows each: pooled tiny days cannot show a step.
    psi_bug: float = 0.5
    # A step that holds this many days at its new level is taken for the new normal (drift) rather than a bug.
    step_accept_days: int = Field(default=7, ge=1)
    ks_pvalue: float = 0.05
    chi2_pvalue: float = 0.05
    # Statistics on a few dozen rows are noise: a day with fewer rows is judged together with the days before it,
    # up to max_window_days; with fewer rows than this even then, the day is not judged.
    min_rows: int = Field(default=1000, ge=1)
    max_window_days: int = Field(default=28, ge=1)
    # Rows of the training set used as the reference (a seeded sample).
    reference_rows: int = Field(default=20_000, ge=100)
    # M5: a feature's null rate rising this far above the highest null rate of any reference day is a bug.
    null_rate_jump: float = Field(default=0.1, gt=0, le=1)
    # M5: a constant column where the reference varies is a bug only when the reference makes a constant column of
    # that many rows less likely than this (a category that dominates, on a small day, is constant by chance).
    constant_probability: float = Field(default=0.001, gt=0, lt=1)
    # M1: only features with at least this share of the serving model's importance turn drift into 'act'.
    min_importance: float = Field(default=0.05, ge=0, le=1)
    # M6: live data this far (PSI on an important feature) from the golden set asks for a new golden version.
    golden_stale_psi: float = Field(default=0.2, gt=0)


class Performance(_Strict):
    """M3: performance on delayed labels (model_performance)."""

    auc_decline: float = Field(default=0.005, ge=0, le=1)
    consecutive_windows: int = Field(default=2, ge=1)
    # A window pools the latest labelled days until it holds this many examples of each class (tiny days),
    # up to max_window_days; an AUC on fewer decides nothing.
    min_per_class: int = Field(default=30, ge=1)
    max_window_days: int = Field(default=30, ge=1)
    bootstrap_resamples: int = Field(default=200, ge=100)


class Retraining(_Strict):
    """M4, O4: when a retrain is requested (retrain_on_drift)."""

    # decline: a confirmed decline on delayed labels (M3), with or without feature drift — recovers from concept
    # drift, where feature PSI stays low; drift_and_decline: both (the catalog's M4); drift_or_decline: either.
    trigger: Literal["decline", "drift_and_decline", "drift_or_decline"] = "decline"
    # One request per episode of decline/drift; if it did not recover (refused at the gates), the next request
    # of the same episode comes after this many days, with more data of the new regime.
    cooldown_days: int = Field(default=7, ge=1)
    # The golden set is disjoint from training in time, and both come from the newest labelled days: a model
    # retrained the day a decline is confirmed would learn only the old world. The first retrain of a decline
    # episode waits until the days labelled since the episode began cover the golden window plus this many days
    # for training.
    min_new_days: int = Field(default=5, ge=0)
    # M6, P1: a retrain asked for by a decline, or by live data that left the golden set, freezes a new golden
    # version from recent labelled data, so the challenger is judged on the world it will serve.
    refresh_golden: bool = True


class Baseline(_Strict):
    """D2: how far a partition may stray from the stats of the training window."""

    # Absolute rise of a column's null rate over its baseline null rate.
    null_rate_jump_max: float = Field(default=0.01, ge=0, le=1)
    # Share of a column's values outside the baseline range (widened by range_margin) or in
    # categories the training window never saw.
    out_of_range_share_max: float = Field(default=0.01, ge=0, le=1)
    # The baseline range [min, max] is widened by this fraction of its width on both sides.
    range_margin: float = Field(default=0.25, ge=0)


class Thresholds(_Strict):
    null_rate_max: float = Field(ge=0, le=1)
    quarantine_rate_max: float = Field(ge=0, le=1)
    completeness_min: float = Field(ge=0, le=1)
    freshness_hours: float = Field(gt=0)
    baseline: Baseline = Baseline()
    gates: Gates
    drift: Drift = Drift()
    performance: Performance = Performance()

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: dict) -> dict:
        perf = data.get("performance") if isinstance(data, dict) else None
        if isinstance(perf, dict) and "retrain_requires_decline" in perf:
            raise ValueError("thresholds.performance.retrain_requires_decline was replaced by retraining.trigger "
                             "(decline | drift_and_decline | drift_or_decline)")
        return data


class Ingestion(_Strict):
    """D7: how long a flaky landing zone is retried (exponential backoff) before the partition fails."""

    retry_attempts: int = Field(default=4, ge=1)
    retry_base_delay_s: float = Field(default=0.5, ge=0)


class Contract(_Strict):
    # Also the Feast project and the MLflow experiment/model prefix: letters, digits and underscores.
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    description: str = ""
    records: Records
    columns: dict[str, Column]
    labels: Labels
    partitions: Partitions
    features: Features
    slices: Slices = Slices()
    datasets: Datasets
    training: Training
    thresholds: Thresholds
    ingestion: Ingestion = Ingestion()
    retraining: Retraining = Retraining()

    @model_validator(mode="after")
    def _references(self) -> Contract:
        cols = self.columns
        for role, name in (
            ("records.record_id", self.records.record_id),
            ("records.entity", self.records.entity),
            ("records.event_timestamp", self.records.event_timestamp),
        ):
            if name not in cols:
                raise ValueError(f"{role} names column {name!r}, which is not under 'columns'")
        for role, name in (("records.record_id", self.records.record_id), ("records.entity", self.records.entity)):
            if cols[name].dtype not in ID_DTYPES:
                raise ValueError(
                    f"{role} names column {name!r} of dtype {cols[name].dtype}; identifiers must be declared as "
                    f"{' or '.join(ID_DTYPES)}: they are joined and compared as text (labels to records, Feast "
                    f"entity keys), so a numeric id would silently fail to match"
                )
        if cols[self.records.event_timestamp].dtype != "datetime":
            raise ValueError("records.event_timestamp must name a column of dtype datetime")
        for name in self.features.passthrough:
            if name not in cols:
                raise ValueError(f"features.passthrough names unknown column {name!r}")
        for d in self.features.derived:
            for a in d.args:
                if a not in cols:
                    raise ValueError(f"features.derived[{d.name}] uses unknown column {a!r}")
        for a in self.features.aggregates:
            if a.column not in cols or cols[a.column].dtype not in ("int", "float"):
                raise ValueError(f"features.aggregates column {a.column!r} must be a numeric column")
        for s in [*self.slices.declared, *([self.slices.sensitive_attribute] if self.slices.sensitive_attribute else [])]:
            if s not in self.feature_names:
                raise ValueError(f"slice {s!r} must be a feature (passthrough or derived)")
        return self

    # ---- derived views -------------------------------------------------------------
    @property
    def entity(self) -> str:
        return self.records.entity

    @property
    def timestamp(self) -> str:
        return self.records.event_timestamp

    @property
    def record_id(self) -> str:
        return self.records.record_id

    @property
    def label(self) -> str:
        return self.labels.column

    @property
    def aggregate_names(self) -> list[str]:
        return [
            f"{a.column}_{fn}_{w}" for a in self.features.aggregates for w in a.windows for fn in a.functions
        ]

    @property
    def feature_names(self) -> list[str]:
        return [*self.features.passthrough, *(d.name for d in self.features.derived), *self.aggregate_names]

    @property
    def warmup_days(self) -> int:
        """Days after the series starts during which windowed aggregates lack full history."""
        longest = max((window_to_timedelta(w) for a in self.features.aggregates for w in a.windows),
                      default=dt.timedelta(0))
        return -(-longest // dt.timedelta(days=1))  # ceil

    @property
    def first_complete_day(self) -> dt.date:
        return self.partitions.start_date + dt.timedelta(days=self.warmup_days)

    @property
    def categorical_features(self) -> list[str]:
        cats = [n for n in self.features.passthrough if self.columns[n].dtype in ("category", "string", "bool")]
        cats += [d.name for d in self.features.derived if d.op in ("not_equal", "equal")]
        return cats

    @property
    def numeric_features(self) -> list[str]:
        cats = set(self.categorical_features)
        return [n for n in self.feature_names if n not in cats]


def window_to_timedelta(window: str) -> dt.timedelta:
    n, unit = _WINDOW.match(window).groups()  # type: ignore[union-attr]
    return {"m": dt.timedelta(minutes=int(n)), "h": dt.timedelta(hours=int(n)), "d": dt.timedelta(days=int(n))}[unit]


def load_contract(path: str | Path | None = None) -> Contract:
    """Load and validate a contract; errors name the file and the offending field."""
    path = Path(path) if path else DEFAULT_CONTRACT
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise ContractError(f"contract file {path} does not exist") from e
    except yaml.YAMLError as e:
        raise ContractError(f"contract file {path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ContractError(f"contract file {path}: expected a mapping at the top level, found {type(raw).__name__}")
    try:
        return Contract.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()
        )
        raise ContractError(f"contract file {path} is invalid: {problems}") from e
