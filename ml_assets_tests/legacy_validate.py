"""FROZEN COPY of the previous validator (pandas + pandera), kept only for test_ingestion_parity.py.

Do not change or use it elsewhere; ml_assets/ingestion/validate.py is the validator.

Contract validation of landing files (D1, S2).

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
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.compute as pc
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
    # Arrow-backed text: validation works on the Arrow arrays without a copy into Python strings.
    return table.to_pandas(types_mapper=pd.ArrowDtype)


# Fast path (exactness by construction): a value matching these patterns parses the same in
# Arrow as in pandas, so only the other values (blank-padded, exotic formats, garbage) go
# through the pandas parser below. Patterns are anchored; `(?s)` so '.' spans any character.
_PRINTABLE_EDGES = r"(?s)^[\x21-\x7e](.*[\x21-\x7e])?$"  # nothing for str.strip() to remove
_SIMPLE = {
    "string": _PRINTABLE_EDGES,
    "category": _PRINTABLE_EDGES,
    # At most 15 significant digits: exactly representable, so every correct parser agrees.
    "float": r"^-?[0-9]{1,9}(\.[0-9]{1,6})?$",
    "int": r"^-?[0-9]{1,15}$",
    # Years 1900-2199 (inside pandas' nanosecond range) and in-range fields (no leap second, no
    # hour 24). Arrow rolls an impossible day (02-30) over into the next month, so the parsed
    # day is compared with the delivered one and a mismatch goes to pandas.
    "datetime": r"^(19|20|21)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$",
}
_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _arrow_text(raw: pd.Series) -> pa.ChunkedArray | None:
    """The column as Arrow strings, or None when it is not text (e.g. typed Parquet columns)."""
    if isinstance(raw.dtype, pd.ArrowDtype):
        arr = pa.chunked_array(raw.array._pa_array) if hasattr(raw.array, "_pa_array") else pa.chunked_array(
            [pa.array(raw)])
        return arr if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) else None
    if raw.dtype == object:
        try:
            return pa.chunked_array([pa.array(raw, type=pa.string(), from_pandas=True)])
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
    return None


_PRINTABLE = pa.array([chr(c) for c in range(0x21, 0x7F)])


def _printable_edges(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    """Same verdict as the _PRINTABLE_EDGES regex, at a third of its cost: look at two characters."""
    first = pc.is_in(pc.utf8_slice_codeunits(arr, 0, 1), value_set=_PRINTABLE)
    last = pc.is_in(pc.utf8_slice_codeunits(arr, -1), value_set=_PRINTABLE)
    return pc.fill_null(pc.and_(first, last), False)


def _simple(arr: pa.ChunkedArray, spec: Column) -> pa.ChunkedArray:
    """Which values take the fast path. An allowed category with clean edges is simple by
    definition, so one hash lookup replaces the regex for all but the other values."""
    pattern = _SIMPLE[spec.dtype]
    allowed = [a for a in spec.allowed or [] if re.fullmatch(pattern, a)]
    if not allowed and pattern == _PRINTABLE_EDGES:
        return _printable_edges(arr)
    if not allowed:
        return pc.fill_null(pc.match_substring_regex(arr, pattern), False)
    known = pc.fill_null(pc.is_in(arr, value_set=pa.array(allowed)), False)
    if pc.all(known).as_py():
        return known
    return pc.or_(known, pc.fill_null(pc.match_substring_regex(arr, pattern), False))


def _parse_column_fast(raw: pd.Series, spec: Column) -> tuple[pd.Series, pd.Series, int, pa.ChunkedArray | None] | None:
    """Vectorised `_parse_column` for text columns: (values, bad mask, empty count, the values as
    Arrow strings when every value took the fast path), or None if the column is not text.
    Values outside the fast path are parsed by `_parse_column` itself."""
    if spec.dtype not in _SIMPLE:
        return None
    arr = _arrow_text(raw)
    if arr is None:
        return None
    empty = pc.fill_null(pc.equal(arr, ""), True)
    simple = _simple(arr, spec)
    fast = pc.if_else(simple, arr, pa.scalar(None, pa.string()))
    if spec.dtype in ("string", "category"):
        values = pd.Series(fast.to_pandas(), index=raw.index, dtype=object)  # nulls arrive as None
    elif spec.dtype in ("float", "int"):
        values = pd.Series(pc.cast(fast, pa.float64()).to_numpy(), index=raw.index, dtype="float64")
    else:
        ts = pc.strptime(fast, format=_DATETIME_FORMAT, unit="us", error_is_null=True)
        same_day = pc.equal(pc.day(ts), pc.cast(pc.utf8_slice_codeunits(fast, 8, 10), pa.int64()))
        simple = pc.fill_null(pc.and_(simple, same_day), False)
        ts = pc.if_else(simple, ts, pa.scalar(None, ts.type))
        values = pd.Series(ts.cast(pa.timestamp("us", tz="UTC")).to_pandas(), index=raw.index)
        values = values.astype("datetime64[us, UTC]")
    empty_np = empty.to_numpy(zero_copy_only=False)
    slow = np.flatnonzero(~simple.to_numpy(zero_copy_only=False) & ~empty_np)
    bad = pd.Series(False, index=raw.index)
    n_empty = int(empty_np.sum())
    text = fast if spec.dtype in ("string", "category") and not len(slow) else None
    if len(slow):
        part = raw.iloc[slow]
        if isinstance(part.dtype, pd.ArrowDtype):
            part = part.astype(object)
        v_slow, bad_slow = _parse_column(part, spec)
        values.iloc[slow] = v_slow.to_numpy()
        bad.iloc[slow] = bad_slow.to_numpy()
        n_empty += int(_empty(part).sum())
    return values, bad, n_empty, text


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


def _null_mask(values: pd.Series, text: pa.ChunkedArray | None = None) -> np.ndarray:
    if text is not None:
        return pc.is_null(text).to_numpy(zero_copy_only=False)
    if values.dtype == "float64":
        return np.isnan(values.to_numpy())
    return values.isna().to_numpy()


def _repeated(values: pd.Series, text: pa.ChunkedArray | None) -> np.ndarray:
    """Every occurrence of a value that occurs more than once (nulls included, as in pandas)."""
    if text is not None and pc.count_distinct(text, mode="all").as_py() == len(text):
        return np.zeros(len(values), dtype=bool)  # the usual case, decided by one hash pass in Arrow
    return values.duplicated(keep=False).to_numpy()


def suspect_rows(typed: pd.DataFrame, columns: dict[str, Column], nulls: dict[str, np.ndarray] | None = None,
                 texts: dict[str, pa.ChunkedArray] | None = None) -> pd.Series:
    """Every row that can fail a rule of `pandera_schema` (a superset of pandera's failures).

    Uniqueness marks every occurrence of a repeated value, so the subset keeps each value's
    first occurrence and pandera's "exclude_first" verdict on the subset equals its verdict on
    the whole frame; the other rules look at one row at a time. `nulls` and `texts` (null
    masks, Arrow copies of text columns) only save work; the result does not depend on them.
    """
    texts = texts or {}
    mask = np.zeros(len(typed), dtype=bool)
    for name, spec in columns.items():
        col = typed[name]
        text = texts.get(name)
        null = nulls[name] if nulls and name in nulls else _null_mask(col, text)
        if not spec.nullable:
            mask |= null
        if spec.unique:
            mask |= _repeated(col, text)
        if spec.min is not None or spec.max is not None:
            v = col.to_numpy(dtype=float, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                if spec.min is not None:
                    mask |= v < spec.min
                if spec.max is not None:
                    mask |= v > spec.max
                # Nulls compare false here and, as in pandera, only the nullability rule judges them.
        if spec.allowed is not None:
            arr = text if text is not None else pa.array(col.to_numpy(), from_pandas=True)
            mask |= ~null & ~pc.fill_null(pc.is_in(arr, value_set=pa.array(spec.allowed)), False).to_numpy(
                zero_copy_only=False)
    return pd.Series(mask, index=typed.index)


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
    texts: dict[str, pa.ChunkedArray] = {}
    for name, spec in columns.items():
        fast = _parse_column_fast(raw[name], spec)
        if fast is not None:
            values, bad, n_empty, text = fast
            non_empty = delivered - n_empty
            if text is not None:
                texts[name] = text
        else:
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
    nulls = {c: _null_mask(typed[c], texts.get(c)) for c in expected}
    null_rates = {c: float(nulls[c].mean()) if delivered else 0.0 for c in expected}

    # pandera reports the reasons; a vectorised pre-check finds the only rows it can reject, so
    # its failure-case machinery runs on those rows alone (nothing at all on a clean file).
    suspect = suspect_rows(typed, columns, nulls, texts)
    try:
        if suspect.any():
            pandera_schema(columns).validate(typed.loc[suspect], lazy=True)
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
    # A clean file (the usual case) is passed on without copying a million rows.
    clean = not mask.any() and typed.index.equals(pd.RangeIndex(delivered))
    valid = typed if clean else typed.loc[~mask].reset_index(drop=True)
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
