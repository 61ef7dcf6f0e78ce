"""The dataset contract: a YAML file parsed into typed, validated settings.

Every threshold and dataset-specific name the pipeline uses comes from here, so a
second dataset is onboarded by writing a contract, not by changing code.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CONTRACT = Path(__file__).with_name("card_transactions.yaml")

DType = Literal["string", "int", "float", "bool", "category", "datetime"]
AggFunction = Literal["count", "sum", "mean", "max", "min"]
DerivedOp = Literal["not_equal", "equal", "hour", "day_of_week"]

ID_DTYPES = ("string", "category")
_WINDOW = re.compile(r"^(\d+)([mhd])$")
# A name that becomes part of a path (a directory, a file): letters, digits, '_', '-', '.', never
# starting with '.' (no '..', no hidden files); directories may nest with '/'.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Quarantine files add these columns to the delivered ones.
RESERVED_PREFIX = "_"


class ContractError(ValueError):
    """The contract file is missing, unreadable or malformed."""


def _safe_segment(value: str) -> str:
    if not _SEGMENT.match(value) or len(value) > 128:
        raise ValueError(f"{value!r} is not a safe name for a path: use letters, digits, '_', '-' and '.', "
                         f"starting with a letter or digit (no '/', no '..'), at most 128 characters")
    return value


def _safe_path(value: str) -> str:
    parts = value.split("/")
    if any(not _SEGMENT.match(p) for p in parts) or len(value) > 256:
        raise ValueError(f"{value!r} is not a safe relative directory: '/'-separated names of letters, digits, "
                         f"'_', '-' and '.', each starting with a letter or digit (no leading '/', no '..')")
    return value


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value) or len(value) > 64:
        raise ValueError(f"{value!r} is not an identifier: a letter, then letters, digits or '_' (at most 64)")
    return value


SafeName = Annotated[str, AfterValidator(_safe_segment)]
SafePath = Annotated[str, AfterValidator(_safe_path)]
Identifier = Annotated[str, AfterValidator(_identifier)]
Share = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    # allow_inf_nan=False: `.nan` or `.inf` in any number is refused (a NaN bound disables its check).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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
        if self.allowed is not None:
            if not self.allowed:
                raise ValueError("'allowed' is empty: no value could pass; omit it to allow any value")
            dups = sorted({a for a in self.allowed if self.allowed.count(a) > 1})
            if dups:
                raise ValueError(f"'allowed' lists {dups} more than once")
            bad = [a for a in self.allowed if not a or a != a.strip() or any(ord(ch) < 32 for ch in a)]
            if bad:
                raise ValueError(f"'allowed' values {bad} are empty or carry surrounding whitespace or control "
                                 f"characters; delivered values are compared exactly")
        if (self.min is not None or self.max is not None) and self.dtype not in ("int", "float"):
            raise ValueError(f"'min'/'max' only apply to numeric columns, not {self.dtype}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.unique and self.dtype in ("float", "bool"):
            raise ValueError(f"'unique' on a {self.dtype} column: equality of {self.dtype} values is not an identity")
        return self


class Records(_Strict):
    dir: SafePath
    record_id: str
    entity: str
    event_timestamp: str
    # A timestamp without a UTC offset: 'utc' reads it as UTC (the landing convention: days are UTC
    # days), 'refuse' quarantines it. Values with an offset are always converted exactly.
    naive_timestamps: Literal["utc", "refuse"] = "utc"
    # Records whose event time is up to this many hours before their partition's day are accepted
    # (late arrivals); anything else outside the day is quarantined, and a file with every row
    # outside its day fails.
    late_tolerance_hours: float = Field(default=0, ge=0, le=24 * 7)


class Labels(_Strict):
    dir: SafePath
    column: str
    positive: int = Field(default=1, ge=0, le=1)  # label values are 0/1; this one is the positive class
    delay_days: int = Field(ge=0, le=366)


class Partitions(_Strict):
    start_date: dt.date
    end_date: dt.date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Partitions:
        if self.end_date is not None and self.end_date <= self.start_date:
            raise ValueError("end_date must be after start_date")
        # Timestamps outside these years cannot be held by the pandas code downstream (nanoseconds).
        for name, day in (("start_date", self.start_date), ("end_date", self.end_date)):
            if day is not None and not dt.date(1678, 1, 1) <= day <= dt.date(2261, 1, 1):
                raise ValueError(f"{name} {day} is outside 1678-01-01 .. 2261-01-01, the range timestamps can take")
        return self


class Derived(_Strict):
    name: Identifier  # a feature name: becomes a column, a Feast field and part of file names
    op: DerivedOp
    args: list[str]


class Aggregate(_Strict):
    column: str
    functions: list[AggFunction]
    windows: list[str]

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("no windows: list at least one, e.g. [1h, 1d]")
        for w in value:
            m = _WINDOW.match(w)
            if not m:
                raise ValueError(f"window {w!r} is not of the form <n>m, <n>h or <n>d")
            if int(m.group(1)) < 1:
                raise ValueError(f"window {w!r} is empty; use at least 1{m.group(2)}")
        if len(set(value)) != len(value):
            raise ValueError(f"windows {value} repeat a window")
        return value

    @field_validator("functions")
    @classmethod
    def _functions(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError(f"functions {value} must list at least one function, each once")
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
    version: SafeName  # becomes a directory of the lake: golden_set/<version>/
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


class Hyperparameters(_Strict):
    """What the training entry point computes with, as the contract's `training:` block states it.

    Strict: the entry point refuses `epochs: 2.5` or `"2"` rather than rounding or parsing it.
    """

    model_config = ConfigDict(strict=True)

    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)  # the micro-batch of one process
    learning_rate: float = Field(gt=0)
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default=[64, 32], min_length=1)
    seed: int = 42
    checkpoint_every: int = Field(default=1, ge=1)
    # Micro-batches per optimizer step (DDP all-reduces once per step) and DDP's bucket size.
    accumulation_steps: int = Field(default=1, ge=1)
    bucket_cap_mb: float = Field(default=25.0, gt=0)
    # The learning rate is multiplied by lr_gamma every lr_step_epochs epochs.
    lr_step_epochs: int = Field(default=10, ge=1)
    lr_gamma: float = Field(default=0.5, gt=0, le=1)


class TrainingSpec(Hyperparameters):
    """The one description of a training run: built from the contract (`Contract.training_spec`), written by the
    launcher (`model_dump_json`) and read back by every rank of the entry point (`model_validate_json`)."""

    numeric: list[str]
    categorical: list[str]
    label: str
    timestamp: str
    validation_fraction: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _features(self) -> TrainingSpec:
        if not self.numeric and not self.categorical:
            raise ValueError("no features: numeric and categorical are both empty")
        return self


class Training(Hyperparameters):
    """The contract's `training:` block: the hyperparameters plus how the run is placed and timed."""

    nproc_per_node: int = Field(default=2, ge=1)
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
    precision_min: Share
    recall_min: Share
    roc_auc_min: Share
    auc_tolerance: Share = 0.005
    relative_regression_max: Share = 0.05
    bootstrap_resamples: int = Field(default=200, ge=100)
    latency_p99_ms: float = Field(default=50, gt=0)
    latency_requests: int = Field(default=100, ge=1)
    fairness: Fairness = Fairness()


class Drift(_Strict):
    """M1, M2, M5, M6: how drift is measured and judged (drift_report)."""

    psi_watch: float = Field(default=0.1, ge=0)
    psi_act: float = Field(default=0.2, ge=0)
    # M5: a day-to-day jump of PSI >= psi_bug right after a stable day is a step, which points to a bug. It is
    # judged only when both days hold min_rows rows each: pooled tiny days cannot show a step.
    psi_bug: float = Field(default=0.5, ge=0)
    # A step that holds this many days at its new level is taken for the new normal (drift) rather than a bug.
    step_accept_days: int = Field(default=7, ge=1)
    ks_pvalue: float = Field(default=0.05, gt=0, lt=1)
    chi2_pvalue: float = Field(default=0.05, gt=0, lt=1)
    # Statistics on a few dozen rows are noise: a day with fewer rows is judged together with the days before it,
    # up to max_window_days; with fewer rows than this even then, the day is not judged.
    min_rows: int = Field(default=1000, ge=1)
    max_window_days: int = Field(default=28, ge=1)
    # Rows of the training set used as the reference (a seeded sample).
    reference_rows: int = Field(default=20_000, ge=100)
    # M5: a feature's null rate rising this far above the highest null rate of any reference day is a bug ...
    null_rate_jump: float = Field(default=0.1, gt=0, le=1)
    # ... when that many nulls on that many rows are also less likely than this under the worst reference day's
    # rate (binomial tail): 3 nulls in 5 rows decide nothing.
    null_rate_alpha: float = Field(default=0.001, gt=0, le=0.5)
    # M5: a constant column where the reference varies (constant on fewer than constant_days_max of its days) is a
    # bug only when the reference makes a constant column of that many rows less likely than constant_probability
    # (a category that dominates, on a small day, is constant by chance).
    constant_probability: float = Field(default=0.001, gt=0, lt=1)
    constant_days_max: float = Field(default=0.05, ge=0, lt=1)
    # A feature constant within at least this share of the reference days is constant by design (a day of week, a
    # promotion flag): it is not judged itself, and each day is compared with the reference days sharing its value.
    calendar_constant_share: float = Field(default=0.95, gt=0.5, le=1)
    # A calendar-matched reference needs, for each calendar value of the window, at least calendar_min_rows
    # reference rows and calendar_min_share x (reference rows / 4); otherwise a coarser calendar (or none) is used.
    calendar_min_share: float = Field(default=0.05, gt=0, le=1)
    calendar_min_rows: int = Field(default=50, ge=1)
    # An earlier day with more than this many times the typical day's rows (a catch-up or backfill delivery) is
    # never pooled into another day's window: it would outweigh the day being judged.
    outsized_day_factor: float = Field(default=10, gt=1)
    # M1: only features with at least this share of the serving model's importance turn drift into 'act'.
    min_importance: float = Field(default=0.05, ge=0, le=1)
    # M6: live data this far (PSI on an important feature) from the golden set asks for a new golden version.
    golden_stale_psi: float = Field(default=0.2, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Drift:
        if not self.psi_watch <= self.psi_act <= self.psi_bug:
            raise ValueError(f"the PSI bands must be ordered psi_watch <= psi_act <= psi_bug; found psi_watch "
                             f"{self.psi_watch}, psi_act {self.psi_act}, psi_bug {self.psi_bug}")
        if self.constant_days_max >= self.calendar_constant_share:
            raise ValueError(f"constant_days_max ({self.constant_days_max}) must be below calendar_constant_share "
                             f"({self.calendar_constant_share}): a column cannot both vary and be constant by design")
        return self

    def band(self, value: float) -> Literal["stable", "watch", "act"]:
        """PSI band: < watch stable, < act watch, >= act act (a large PSI alone is drift, never a bug)."""
        if value < self.psi_watch:
            return "stable"
        return "watch" if value < self.psi_act else "act"


class Performance(_Strict):
    """M3: performance on delayed labels (model_performance)."""

    auc_decline: Share = 0.005
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
    """D2: how a partition is compared with the stats of the training window.

    Values outside the contract's domain are bad data (quarantined by D1). In-domain values that
    training did not see are drift, reported as a warning for monitoring to judge; only a
    null-rate jump, a sign of a broken pipeline, blocks the partition.
    """

    # A column's null rate may exceed the highest null rate of any baseline partition by this much...
    null_rate_jump_max: Share = 0.01
    # ...and the excess must hold at this one-sided confidence (Wilson bound on the partition's
    # rate), so that a few nulls in a small partition are not a jump.
    null_rate_confidence: float = Field(default=0.999, ge=0.5, lt=1)
    # Partitions with fewer delivered rows than this are not judged at all.
    min_rows: int = Field(default=100, ge=1)
    # Drift signal (a warning, not blocking) when more than this share of a column's values lie
    # outside the baseline range (widened by range_margin) or in categories training never saw.
    out_of_range_share_max: Share = 0.01
    # The baseline range [min, max] is widened by this fraction of its width on both sides (of the
    # value's magnitude when training saw a single value).
    range_margin: float = Field(default=0.25, ge=0, le=100)


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
    """How landing files are read and judged as deliveries (D1, D5-D7)."""

    # D7: a flaky landing zone is retried this many times (exponential backoff) before the partition fails.
    retry_attempts: int = Field(default=4, ge=1, le=20)
    retry_base_delay_s: float = Field(default=0.5, ge=0, le=600)
    # A delivery manifest (<dir>/<day>.manifest.json: rows and sha256 per file, see README) is
    # checked when present; 'required' fails a partition whose manifest has not arrived.
    manifest: Literal["optional", "required"] = "optional"
    # D1: a column where more than this share of the non-empty values cannot be accepted has the
    # wrong type as a whole: the file fails instead of quarantining most of its rows.
    wrong_type_share: float = Field(default=0.5, gt=0, le=1)
    # Text values that mean "missing" in this source (e.g. NULL, N/A). An empty field is always
    # missing; nothing else is read as missing unless listed here ('NA' may be Namibia).
    null_markers: list[str] = []
    # Expected volume: a records partition with fewer rows than (1 - volume_drop_max) x the median
    # of the last volume_window_days ingested partitions fails the row_volume check; judged once
    # volume_min_history_days partitions are known. 1.0 turns the check off.
    volume_drop_max: Share = 0.9
    volume_window_days: int = Field(default=14, ge=1, le=366)
    volume_min_history_days: int = Field(default=3, ge=1, le=366)

    @model_validator(mode="after")
    def _judgeable(self) -> Ingestion:
        if self.volume_min_history_days > self.volume_window_days:
            raise ValueError(f"volume_min_history_days {self.volume_min_history_days} exceeds volume_window_days "
                             f"{self.volume_window_days}: the volume would never be judged")
        if len(set(self.null_markers)) != len(self.null_markers) or "" in self.null_markers:
            raise ValueError(f"null_markers {self.null_markers} repeat a marker or list the empty field (always "
                             f"missing already)")
        return self


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
        if not cols:
            raise ValueError("columns: no columns declared")
        for name in cols:
            if (not name or name != name.strip() or name.startswith(RESERVED_PREFIX)
                    or any(ord(ch) < 32 for ch in name)):
                raise ValueError(f"columns: {name!r} is not a usable column name (empty, surrounding whitespace, "
                                 f"control characters, or a leading '{RESERVED_PREFIX}', which quarantine files "
                                 f"reserve for their own columns)")
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
            if cols[name].nullable:
                raise ValueError(f"columns.{name}.nullable: {role} {name!r} must not be nullable (a record without "
                                 f"it cannot be joined or deduplicated)")
        rid = cols[self.records.record_id]
        if not rid.unique:
            raise ValueError(f"columns.{self.records.record_id}.unique: records.record_id must be declared "
                             f"unique: true (it identifies a record for dedupe and label joins)")
        if self.records.entity == self.records.record_id:
            raise ValueError("records.entity: the entity must differ from the record id (aggregates are per entity)")
        ts = cols[self.records.event_timestamp]
        if ts.dtype != "datetime":
            raise ValueError("records.event_timestamp must name a column of dtype datetime")
        if ts.nullable:
            raise ValueError(f"columns.{self.records.event_timestamp}.nullable: the event timestamp must not be "
                             f"nullable (it places the record in time)")
        a, b = self.records.dir, self.labels.dir
        if a == b or a.startswith(b + "/") or b.startswith(a + "/"):
            raise ValueError(f"labels.dir: {b!r} and records.dir {a!r} must be separate directories")
        if self.labels.column == self.records.record_id:
            raise ValueError("labels.column: the label column must differ from records.record_id")
        passthrough = self.features.passthrough
        if len(set(passthrough)) != len(passthrough):
            raise ValueError(f"features.passthrough lists a column more than once: {passthrough}")
        for name in passthrough:
            if name not in cols:
                raise ValueError(f"features.passthrough names unknown column {name!r}")
            if name in (self.records.record_id, self.records.event_timestamp):
                raise ValueError(f"features.passthrough: {name!r} is the record id or the event timestamp, not a "
                                 f"feature (use a derived hour/day_of_week for time)")
            if cols[name].dtype == "datetime":
                raise ValueError(f"features.passthrough: {name!r} is a datetime; derive a feature from it "
                                 f"(hour, day_of_week) instead")
        numeric = ("int", "float")
        for i, d in enumerate(self.features.derived):
            where = f"features.derived[{i}] ({d.name})"
            for arg in d.args:
                if arg not in cols:
                    raise ValueError(f"{where} uses unknown column {arg!r}")
            arity = 2 if d.op in ("not_equal", "equal") else 1
            if len(d.args) != arity:
                raise ValueError(f"{where}: {d.op} takes {arity} column(s); found {len(d.args)}: {d.args}")
            dtypes = [cols[arg].dtype for arg in d.args]
            if d.op in ("hour", "day_of_week") and dtypes != ["datetime"]:
                raise ValueError(f"{where}: {d.op} needs a datetime column; {d.args[0]!r} is {dtypes[0]}")
            if arity == 2 and (dtypes[0] in numeric) != (dtypes[1] in numeric):
                raise ValueError(f"{where}: {d.op} compares {d.args} of dtypes {dtypes}; compare like with like")
        for a in self.features.aggregates:
            if a.column not in cols or cols[a.column].dtype not in numeric:
                raise ValueError(f"features.aggregates column {a.column!r} must be a numeric column")
        names = self.feature_names
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"features: feature names {dup} are declared more than once")
        clash = sorted({d.name for d in self.features.derived} & set(cols))
        if clash:
            raise ValueError(f"features.derived names {clash} are also column names; pick distinct names")
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
    def training_spec(self) -> TrainingSpec:
        """What the training entry point needs: the hyperparameters, the features and the split."""
        return TrainingSpec(
            **self.training.model_dump(include=set(Hyperparameters.model_fields)),
            numeric=self.numeric_features, categorical=self.categorical_features, label=self.label,
            timestamp=self.timestamp, validation_fraction=self.datasets.validation_fraction)

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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML with duplicate keys refused: the second `min:` must not silently win over the first."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
        try:
            seen[key] = key_node.start_mark.line
        except TypeError:  # an unhashable key; the default constructor reports it
            break
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_contract(path: str | Path | None = None) -> Contract:
    """Load and validate a contract; every refusal is one ContractError naming the file and the field."""
    path = Path(path) if path else DEFAULT_CONTRACT
    # `from None`: the message is the whole story; a chained traceback would only bury it.
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(f"contract file {path} does not exist (set ML_ASSETS_CONTRACT to a contract "
                            f"YAML file)") from None
    except IsADirectoryError:
        raise ContractError(f"contract path {path} is a directory; expected a contract YAML file") from None
    except PermissionError:
        raise ContractError(f"contract file {path} cannot be read (permission denied)") from None
    except UnicodeDecodeError as e:
        raise ContractError(f"contract file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ContractError(f"contract file {path} cannot be read: {e.strerror or e}") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ContractError(f"contract file {path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ContractError(f"contract file {path}: expected a mapping at the top level, "
                            f"found {type(raw).__name__}") from None
    try:
        return Contract.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            (f"{'.'.join(str(p) for p in err['loc'])}: " if err["loc"] else "")
            + err["msg"].removeprefix("Value error, ") for err in e.errors()
        )
        raise ContractError(f"contract file {path} is invalid: {problems}") from None
