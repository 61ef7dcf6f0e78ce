"""Contract validation of landing files (D1, S2).

Two levels of failure, as in RELIABILITY.md D1:
- a *file-level* problem (unreadable or empty file, unknown format, missing or renamed
  column, a column of the wrong type) fails the partition with a `LandingFileError` that
  says what was expected, what was found and which file; the file stays where it is.
- a *row-level* problem (unparseable value, null where the contract forbids it, value out
  of range or outside the allowed categories, duplicate id) sends the row to quarantine
  with a reason. Nothing is coerced silently and nothing is dropped:
  rows delivered == rows valid + rows quarantined.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.csv as pacsv

from ml_assets.contract import Column, Contract

SUPPORTED_FORMATS = (".csv", ".parquet")
# A column where more than this share of non-empty values fails to parse has the wrong
# type as a whole (a file-level error), not a few bad rows.
WRONG_TYPE_SHARE = 0.5

QUARANTINE_COLUMNS = ["_source_file", "_row_number", "_reason"]


class LandingFileError(ValueError):
    """A landing file cannot be ingested as a whole. The file is kept as delivered."""

    def __init__(self, source: str, expected: str, found: str, hint: str = ""):
        self.source, self.expected, self.found = source, expected, found
        msg = f"{source}: expected {expected}; found {found}."
        if hint:
            msg += f" {hint}"
        super().__init__(msg)


@dataclass
class ValidationResult:
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    delivered: int
    reasons: Counter = field(default_factory=Counter)
    null_rates: dict[str, float] = field(default_factory=dict)

    @property
    def quarantine_rate(self) -> float:
        return len(self.quarantine) / self.delivered if self.delivered else 0.0


def read_landing_file(data: bytes, source: str) -> pd.DataFrame:
    """Parse a landing file into a frame of raw values (CSV: all strings, never coerced)."""
    suffix = "." + source.rsplit(".", 1)[-1].lower() if "." in source else ""
    if suffix not in SUPPORTED_FORMATS:
        raise LandingFileError(source, f"a file ending in {' or '.join(SUPPORTED_FORMATS)}", f"{suffix or 'no extension'}")
    if not data:
        raise LandingFileError(source, "a non-empty file with a header row", "an empty file (0 bytes)")
    try:
        if suffix == ".csv":
            df = _read_csv_as_text(data)
        else:
            df = pd.read_parquet(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - every parser error means the same thing here
        raise LandingFileError(source, f"a readable {suffix[1:]} file", f"{type(e).__name__}: {e}",
                               "The file may be truncated or corrupt; it was left in the landing zone.") from e
    return df


def _read_csv_as_text(data: bytes) -> pd.DataFrame:
    """Every field as text, exactly as delivered: types are decided by the contract, not guessed.

    pyarrow rejects a row with too few or too many fields (pandas pads it silently) and a
    file cut off mid-row fails the newline check, so a truncated delivery cannot pass as data.
    """
    if not data.endswith((b"\n", b"\r")):
        raise ValueError("the last line has no newline: the file looks truncated")
    first = data.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
    header = next(csv.reader([first]))
    table = pacsv.read_csv(
        io.BytesIO(data),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    return table.to_pandas()


def _parse_column(raw: pd.Series, spec: Column) -> tuple[pd.Series, pd.Series]:
    """Return (parsed values, mask of rows whose non-empty value failed to parse)."""
    if raw.dtype == object or pd.api.types.is_string_dtype(raw):
        text = raw.astype("string").str.strip()
        empty = text.isna() | (text == "")
    else:
        text, empty = None, raw.isna()
    if spec.dtype in ("string", "category"):
        values = (text if text is not None else raw.astype("string")).where(~empty, pd.NA)
        return values.astype(object).where(~empty, None), pd.Series(False, index=raw.index)
    if spec.dtype in ("float", "int"):
        if text is None and pd.api.types.is_numeric_dtype(raw):
            values = raw.astype("float64")
        else:
            values = pd.to_numeric(text if text is not None else raw, errors="coerce").astype("float64")
        bad = values.isna() & ~empty
        if spec.dtype == "int":
            frac = values.notna() & (values % 1 != 0)
            bad |= frac
            values = values.where(~frac)
        return values, bad
    if spec.dtype == "datetime":
        if text is None and pd.api.types.is_datetime64_any_dtype(raw):
            values = pd.to_datetime(raw, utc=True)
        else:
            values = pd.to_datetime(text if text is not None else raw, utc=True, errors="coerce", format="ISO8601")
        values = values.astype("datetime64[us, UTC]")
        return values, values.isna() & ~empty
    if spec.dtype == "bool":
        mapping = {"true": True, "false": False, "1": True, "0": False}
        lowered = (text if text is not None else raw.astype("string")).str.lower()
        values = lowered.map(mapping)
        return values.astype(object), values.isna() & ~empty
    raise AssertionError(f"unhandled dtype {spec.dtype}")


def pandera_schema(columns: dict[str, Column]) -> pandera.DataFrameSchema:
    """The row-level rules of the contract as a pandera schema (types are parsed before)."""
    cols = {}
    for name, spec in columns.items():
        checks = []
        if spec.min is not None:
            checks.append(pandera.Check.ge(spec.min, error=f"{name} >= {spec.min}"))
        if spec.max is not None:
            checks.append(pandera.Check.le(spec.max, error=f"{name} <= {spec.max}"))
        if spec.allowed is not None:
            checks.append(pandera.Check.isin(spec.allowed, error=f"{name} in {spec.allowed}"))
        cols[name] = pandera.Column(
            nullable=spec.nullable,
            unique=spec.unique,
            report_duplicates="exclude_first",
            checks=checks,
            coerce=False,
            required=True,
        )
    return pandera.DataFrameSchema(cols, strict=False, ordered=False)


def validate_frame(raw: pd.DataFrame, columns: dict[str, Column], source: str) -> ValidationResult:
    """Validate raw rows against the contract's columns; see the module docstring."""
    expected = list(columns)
    missing = [c for c in expected if c not in raw.columns]
    if missing:
        extra = [c for c in raw.columns if c not in columns]
        hint = f"Unexpected columns {extra} may be renamed versions of them." if extra else ""
        raise LandingFileError(source, f"columns {expected}", f"columns {list(raw.columns)} (missing {missing})", hint)

    delivered = len(raw)
    reasons: dict[int, list[str]] = {}
    parsed = {}
    for name, spec in columns.items():
        values, bad = _parse_column(raw[name], spec)
        non_empty = int((~_empty(raw[name])).sum())
        n_bad = int(bad.sum())
        if non_empty and n_bad / non_empty > WRONG_TYPE_SHARE:
            sample = raw.loc[bad, name].astype(str).head(3).tolist()
            raise LandingFileError(source, f"column {name!r} of type {spec.dtype}",
                                   f"{n_bad} of {non_empty} values not parseable as {spec.dtype} (e.g. {sample})")
        for i in np.flatnonzero(bad.to_numpy()):
            reasons.setdefault(int(i), []).append(f"{name}: {raw[name].iloc[i]!r} is not a valid {spec.dtype}")
        parsed[name] = values
    typed = pd.DataFrame(parsed, index=raw.index)
    null_rates = {c: float(typed[c].isna().mean()) if delivered else 0.0 for c in expected}

    try:
        pandera_schema(columns).validate(typed, lazy=True)
    except pandera.errors.SchemaErrors as err:
        fc = err.failure_cases
        for row in fc.itertuples(index=False):
            if row.index is None or (isinstance(row.index, float) and np.isnan(row.index)):
                continue
            pos = raw.index.get_loc(row.index)
            reasons.setdefault(int(pos), []).append(_describe(row))

    # Parse failures left NaN behind; a row is valid only without any reason.
    bad_pos = np.array(sorted(reasons), dtype=int)
    mask = np.zeros(delivered, dtype=bool)
    mask[bad_pos] = True
    valid = typed.loc[~mask].reset_index(drop=True)
    quarantine = raw.loc[mask].astype(str).reset_index(drop=True)
    quarantine["_source_file"] = source
    quarantine["_row_number"] = bad_pos + 2 if source.endswith(".csv") else bad_pos  # CSV: 1-based, after header
    quarantine["_reason"] = ["; ".join(dict.fromkeys(reasons[p])) for p in bad_pos]
    counter: Counter = Counter(r.split(":")[0] + ": " + _reason_kind(r) for p in bad_pos for r in reasons[p])
    return ValidationResult(valid, quarantine, delivered, counter, null_rates)


def _empty(s: pd.Series) -> pd.Series:
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        t = s.astype("string").str.strip()
        return t.isna() | (t == "")
    return s.isna()


def _describe(row) -> str:
    col = row.column
    check = str(row.check)
    if check == "not_nullable":
        return f"{col}: null where the contract requires a value"
    if check == "field_uniqueness":
        return f"{col}: duplicate value {row.failure_case!r}"
    return f"{col}: {row.failure_case!r} violates {check}"


def _reason_kind(reason: str) -> str:
    text = reason.split(": ", 1)[-1]
    if "violates" in text:
        return "violates " + text.split("violates ", 1)[1]
    if text.startswith("duplicate"):
        return "duplicate"
    if "not a valid" in text:
        return "unparseable"
    return text


def validate_records(raw: pd.DataFrame, contract: Contract, source: str) -> ValidationResult:
    result = validate_frame(raw, contract.columns, source)
    # Keep the contract's column order and nothing else (extra columns are reported, not passed on).
    result.valid = result.valid[list(contract.columns)]
    return result


def label_columns(contract: Contract) -> dict[str, Column]:
    return {
        contract.record_id: Column(dtype="string", nullable=False, unique=True),
        contract.label: Column(dtype="int", nullable=False, min=0, max=1),
    }


def validate_labels(raw: pd.DataFrame, contract: Contract, source: str) -> ValidationResult:
    result = validate_frame(raw, label_columns(contract), source)
    result.valid[contract.label] = result.valid[contract.label].astype("int64")
    return result
