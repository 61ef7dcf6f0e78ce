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
    entity_fraction: float = Field(gt=0, lt=1)
    window_days: int = Field(ge=1)
    min_per_class: int = Field(ge=1)
    negatives_per_positive: int = Field(ge=1)
    seed: int = 7


class Datasets(_Strict):
    golden: Golden
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)


class Training(_Strict):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    hidden: list[int] = [64, 32]
    seed: int = 42
    nproc_per_node: int = Field(default=2, ge=1)
    checkpoint_every: int = Field(default=1, ge=1)
    # Micro-batches per optimizer step (DDP all-reduces once per step) and DDP's bucket size.
    accumulation_steps: int = Field(default=1, ge=1)
    bucket_cap_mb: float = Field(default=25.0, gt=0)
    expected_minutes: float = Field(default=5, gt=0)
    overtime_factor: float = Field(default=1.5, gt=1)   # T3: alert when a run passes this x expected
    deadline_factor: float = Field(default=2.0, gt=1)   # T2: kill the run (and its pods) at this x expected


class Fairness(_Strict):
    """P5 on `slices.sensitive_attribute` (see ml_assets.registry.gates.fairness_gate for why)."""

    # equalized_odds: true- and false-positive rates compared across groups; equal_opportunity: the true-positive
    # rate only; demographic_parity: the flag rate over all rows (confounded by differing base rates).
    metric: Literal["equalized_odds", "equal_opportunity", "demographic_parity"] = "equalized_odds"
    ratio_min: float = Field(default=0.8, gt=0, le=1)   # lowest group's rate / highest group's rate
    confidence: float = Field(default=0.95, gt=0, lt=1)  # simultaneous bounds; refused when the upper one < ratio_min
    # Rows of one entity (a card's burst of fraud) are not independent: variances use the entity as cluster.
    cluster_by_entity: bool = True


class Gates(_Strict):
    precision_min: float
    recall_min: float
    roc_auc_min: float
    auc_tolerance: float = 0.005
    relative_regression_max: float = 0.05
    bootstrap_resamples: int = Field(default=200, ge=100)
    latency_p99_ms: float = 50
    latency_requests: int = 100
    fairness: Fairness = Fairness()


class Drift(_Strict):
    psi_watch: float = 0.1
    psi_act: float = 0.2
    psi_bug: float = 0.5
    ks_pvalue: float = 0.05
    chi2_pvalue: float = 0.05


class Performance(_Strict):
    auc_decline: float = 0.005
    consecutive_windows: int = 2
    # M4: drift alone does not retrain unless this is false; a real decline must hold too.
    retrain_requires_decline: bool = True


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
