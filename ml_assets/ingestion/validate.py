"""Contract validation of landing files (D1, S2), in Arrow from file to lake.

Two levels of failure, as in RELIABILITY.md D1:
- a *file-level* problem (unreadable, empty or non-UTF-8 file, unknown format, a missing,
  renamed or duplicated column, a column of the wrong type, every row outside the partition's
  day) fails the partition with a `LandingFileError` that says what was expected, what was
  found and which file; the file stays where it is.
- a *row-level* problem (a value that does not parse exactly, a null where the contract
  forbids it, a value out of range or outside the allowed categories, a duplicate id, an event
  time outside the partition's day) sends the row to quarantine with a reason. Nothing is
  coerced and nothing is dropped: rows delivered == rows valid + rows quarantined.

Values are parsed exactly (see `ml_assets.ingestion.text`): the valid rows hold the delivered
values in the contract's types, and the quarantine holds the delivered text.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ml_assets.contract import Column, Contract
from ml_assets.ingestion import text
from ml_assets.ingestion.ids import hash_text

SUPPORTED_FORMATS = (".csv", ".parquet")
QUARANTINE_COLUMNS = ["_source_file", "_row_number", "_reason"]
ARROW_TYPES = {"string": pa.string(), "category": pa.string(), "float": pa.float64(), "int": pa.int64(),
               "bool": pa.bool_(), "datetime": pa.timestamp("us", tz="UTC")}


class IngestionError(Exception):
    """Anything ingestion refuses: the project's own error type (never retried as transient)."""


class LandingFileError(IngestionError, ValueError):
    """A landing file cannot be ingested as a whole. The file is kept as delivered."""

    def __init__(self, source: str, expected: str, found: str, hint: str = ""):
        self.source, self.expected, self.found = source, expected, found
        msg = f"{source}: expected {expected}; found {found}."
        if hint:
            msg += f" {hint}"
        super().__init__(msg)


class OutsidePartition(LandingFileError):
    """Every event time of a records file lies outside its partition's day (another day's file?)."""


@dataclass(frozen=True)
class Rules:
    """What a file is judged by, beyond its columns: the contract settings that apply to it."""

    identifiers: tuple[str, ...] = ()  # id columns: text exactly as delivered, no surrounding whitespace
    naive_timestamps: str = "utc"  # records.naive_timestamps
    timestamp: str | None = None  # the event-time column judged against `window`
    window: tuple[dt.datetime, dt.datetime] | None = None  # [start, end) of accepted event times
    window_setting: str = ""  # how the window came about, for messages
    wrong_type_share: float = 0.5  # ingestion.wrong_type_share
    null_markers: tuple[str, ...] = ()  # ingestion.null_markers: text that means "missing"


@dataclass
class ValidationResult:
    """The delivered rows, their typed values and every row's reasons to be quarantined.

    Later stages (ids reused across deliveries, labels of quarantined records) add reasons
    with `reject`; `valid` and `quarantine` are always computed from the current reasons.
    """

    source: str
    raw: pa.Table  # as delivered
    typed: pa.Table  # the contract's columns in its types, one row per delivered row
    null_rates: dict[str, float]
    reasons: dict[int, list[str]] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)
    id_hashes: np.ndarray | None = None  # 64-bit hash of every row's record id (see ids.py)
    first_row_number: int = 2  # CSV: record number counting the header as 1; Parquet: 1-based row
    sorted_id_hashes: np.ndarray | None = None  # id_hashes of the non-null ids, sorted
    _valid_cache: tuple | None = field(default=None, repr=False)

    def valid_id_hashes(self) -> np.ndarray:
        """Sorted hashes of the valid rows' record ids (what the id index stores)."""
        if self.sorted_id_hashes is None or len(self.sorted_id_hashes) != self.delivered:
            return np.sort(self.id_hashes[self.valid_mask])
        if not self.reasons:
            return self.sorted_id_hashes
        # Take the (few) rejected rows' hashes out of the sorted array instead of sorting again.
        gone, counts = np.unique(self.id_hashes[np.fromiter(self.reasons, dtype=np.int64)], return_counts=True)
        first = np.searchsorted(self.sorted_id_hashes, gone)
        drop = np.concatenate([np.arange(f, f + c) for f, c in zip(first.tolist(), counts.tolist(), strict=True)])
        return np.delete(self.sorted_id_hashes, drop)

    @property
    def delivered(self) -> int:
        return self.raw.num_rows

    def reject(self, rows: np.ndarray | list[int], reason: str | list[str]) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        texts = [reason] * len(rows) if isinstance(reason, str) else reason
        for r, t in zip(rows.tolist(), texts, strict=True):
            self.reasons.setdefault(r, []).append(t)

    @property
    def valid_mask(self) -> np.ndarray:
        mask = np.ones(self.delivered, dtype=bool)
        if self.reasons:
            mask[np.fromiter(self.reasons, dtype=np.int64)] = False
        return mask

    @property
    def valid_table(self) -> pa.Table:
        """The valid rows in the contract's types (Arrow; categories dictionary-encoded)."""
        if not self.reasons:
            return self.typed
        key = len(self.reasons), sum(len(r) for r in self.reasons.values())
        if self._valid_cache is None or self._valid_cache[0] != key:
            self._valid_cache = (key, self.typed.filter(pa.array(self.valid_mask)))
        return self._valid_cache[1]

    @property
    def valid(self) -> pd.DataFrame:
        """The valid rows as pandas reads them from the lake (text as str, timestamps UTC)."""
        return _plain(self.valid_table).to_pandas()

    @property
    def quarantine(self) -> pd.DataFrame:
        """The quarantined rows as delivered (text), with `_source_file`, `_row_number`, `_reason`."""
        return self.quarantine_table.to_pandas()

    @property
    def quarantine_table(self) -> pa.Table:
        rows = np.array(sorted(self.reasons), dtype=np.int64)
        picked = self.raw.take(pa.array(rows, type=pa.int64()))
        names = [c if c not in QUARANTINE_COLUMNS else f"{c}_delivered" for c in picked.column_names]
        cols = [text.text_of(picked.column(i)) for i in range(picked.num_columns)]
        cols += [pa.array([self.source] * len(rows), type=pa.string()),
                 pa.array(rows + self.first_row_number, type=pa.int64()),
                 pa.array(["; ".join(dict.fromkeys(self.reasons[int(r)])) for r in rows], type=pa.string())]
        return pa.table(cols, names=names + QUARANTINE_COLUMNS)

    @property
    def valid_count(self) -> int:
        return self.delivered - len(self.reasons)

    @property
    def quarantined(self) -> int:
        return len(self.reasons)

    @property
    def quarantine_rate(self) -> float:
        return self.quarantined / self.delivered if self.delivered else 0.0

    @property
    def reason_counts(self) -> Counter:
        return Counter(r.split(":")[0] + ": " + _reason_kind(r) for rs in self.reasons.values()
                       for r in dict.fromkeys(rs))

    def row_numbers(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows) + self.first_row_number


# ---- reading ----------------------------------------------------------------------------------
_CATEGORY = pa.dictionary(pa.int32(), pa.string())
_PARALLEL_ROWS = 100_000  # below this, threads cost more than they save
_PARTS, _SPLIT_BYTES = 2, 8 << 20  # CSV files from 8 MB on are parsed as two parts at once
_LINE_END = re.compile(rb"[\r\n]")
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


def file_format(source: str) -> str:
    name = source.rsplit("/", 1)[-1]
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""


def read_landing_file(data: bytes, source: str, columns: dict[str, Column] | None = None) -> pa.Table:
    """Parse a landing file into a table of raw values (CSV: all text, never coerced; Parquet: as typed).

    With the contract's `columns`, CSV category columns are read dictionary-encoded (the same
    text, each distinct value held once), which makes them cheap to check and to write.
    """
    suffix = file_format(source)
    if suffix not in SUPPORTED_FORMATS:
        raise LandingFileError(source, f"a file ending in {' or '.join(SUPPORTED_FORMATS)}",
                               f"{suffix or 'no extension'}")
    if not data:
        raise LandingFileError(source, "a non-empty file with a header row", "an empty file (0 bytes)")
    if suffix == ".csv":
        return _read_csv(data, source, columns or {})
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - every parser error means the same thing here
        raise LandingFileError(source, "a readable parquet file", f"{type(e).__name__}: {e}",
                               "The file may be truncated or corrupt; it was left in the landing zone.") from None
    _no_duplicate_columns(table.column_names, source)
    return table


def _read_csv(data: bytes, source: str, columns: dict[str, Column]) -> pa.Table:
    """Every field as text, exactly as delivered: types are decided by the contract, not guessed.

    pyarrow rejects a row with too few or too many fields and a file cut off mid-row fails the
    newline check, so a truncated delivery cannot pass as data. Quoted fields may hold newlines.
    """
    for bom, encoding in _BOMS.items():
        if data.startswith(bom):
            raise LandingFileError(source, "UTF-8 text", f"a {encoding} byte-order mark",
                                   "Re-export the file as UTF-8; it was left in the landing zone.")
    if not data.endswith((b"\n", b"\r")):
        raise LandingFileError(source, "a file whose last line ends with a newline",
                               "a last line without one: the file looks truncated",
                               "Re-deliver the complete file; it was left in the landing zone.")
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    end = _LINE_END.search(body)
    first = body[: end.start()] if end else body
    try:
        header = next(csv.reader([first.decode("utf-8")]), [])
    except (UnicodeDecodeError, csv.Error) as e:
        raise LandingFileError(source, "a UTF-8 header row", f"{type(e).__name__}: {e}") from None
    if not header or header == [""]:
        raise LandingFileError(source, "a header row naming the columns", "an empty first line")
    _no_duplicate_columns(header, source)
    types = {c: _CATEGORY if c in columns and columns[c].dtype == "category" else pa.string() for c in header}
    quotes = data.count(b'"') if b'"' in data else 0  # `in` stops at the first quote: cheap when there is none
    parts = _split_records(data, _PARTS if len(data) >= _SPLIT_BYTES else 1, quoted=quotes > 0)
    try:
        if len(parts) > 1:
            # Parts parse in parallel (Arrow releases the GIL); rows stay in file order.
            with ThreadPoolExecutor(len(parts)) as pool:
                tables = list(pool.map(lambda ab: _parse_csv(data, ab, types, header if ab[0] else None), parts))
            table = pa.concat_tables(tables)
        else:
            table = _parse_csv(data, (0, len(data)), types, None)
    except pa.ArrowInvalid:
        try:  # the error as the whole file shows it (a part's row numbers would mislead)
            table = _parse_csv(data, (0, len(data)), types, None)
        except pa.ArrowInvalid as e:
            msg = str(e)
            hint = ("The file is not valid UTF-8 (e.g. latin-1); re-export it as UTF-8." if "UTF8" in msg
                    else "The file may be truncated or corrupt; it was left in the landing zone.")
            raise LandingFileError(source, "a readable csv file", f"{type(e).__name__}: {msg}", hint) from None
    if table.column_names != header:
        raise LandingFileError(source, f"the columns of the header row {header}",
                               f"columns {table.column_names} after parsing (a quoted header field?)")
    _no_open_quote_at_the_end(data, quotes, table, types, source)
    return table


def _parse_csv(data: bytes, span: tuple[int, int], types: dict, names: list[str] | None) -> pa.Table:
    """Parse data[span] as one block; `names` for a part that starts after the header."""
    start, stop = span
    view = pa.py_buffer(data)[start:stop] if (start, stop) != (0, len(data)) else pa.py_buffer(data)
    return pacsv.read_csv(
        pa.BufferReader(view),
        # One block: the columns come back as single arrays, and the parser itself (not a block
        # splitter guessing at line ends) sees quoted line breaks.
        read_options=pacsv.ReadOptions(use_threads=False, block_size=max(stop - start + 1, 1 << 20),
                                       column_names=names),
        parse_options=pacsv.ParseOptions(newlines_in_values=False),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                             quoted_strings_can_be_null=False),
    )


def _split_records(data: bytes, parts: int, quoted: bool) -> list[tuple[int, int]]:
    """Byte spans of `parts` pieces of a CSV file, each ending at a record boundary: a line break
    with an even number of quote characters before it (outside any quoted field)."""
    if parts <= 1:
        return [(0, len(data))]
    newline = b"\n" if b"\n" in data[: 1 << 16] else b"\r"
    spans, start = [], 0
    header_end = data.find(newline) + 1
    for k in range(1, parts):
        at = max(len(data) * k // parts, header_end, start)
        counted, parity = start, 0
        while True:
            at = data.find(newline, at)
            if at < 0 or at >= len(data) - 1:
                return [*spans, (start, len(data))] if spans else [(0, len(data))]
            if quoted:
                parity = (parity + data.count(b'"', counted, at)) % 2
                counted = at
            if parity == 0:
                break
            at += 1
        spans.append((start, at + 1))
        start = at + 1
    spans.append((start, len(data)))
    return spans


def _no_open_quote_at_the_end(data: bytes, quotes: int, table: pa.Table, types: dict, source: str) -> None:
    """A file cut inside a quoted field that happens to end with a line break parses as if the field
    were closed. An odd number of quote characters is the sign (quotes are balanced otherwise, save
    for a lone quote inside an unquoted field, which some writers emit); then a row of empty fields
    appended to the file must come back as one more row, not vanish into an open quote."""
    if quotes % 2 == 0:
        return
    newline = b"\r\n" if data.endswith(b"\r\n") else data[-1:]
    probe = data + b"," * (table.num_columns - 1) + newline
    try:
        rows = _parse_csv(probe, (0, len(probe)), types, None).num_rows
    except pa.ArrowInvalid:
        rows = -1
    if rows != table.num_rows + 1:
        raise LandingFileError(source, "every quoted field closed", "a quote left open at the end of the file",
                               "The file looks truncated inside a quoted field; it was left in the landing zone.")


def _no_duplicate_columns(names: list[str], source: str) -> None:
    dups = [n for n, k in Counter(names).items() if k > 1]
    if dups:
        raise LandingFileError(source, "each column named once", f"column(s) {dups} more than once in {names}",
                               "A duplicated column is ambiguous; the file was left in the landing zone.")


# ---- validation -------------------------------------------------------------------------------
def _as_table(raw: pa.Table | pd.DataFrame) -> pa.Table:
    if isinstance(raw, pa.Table):
        return raw
    cols = {}
    for name in raw.columns:
        s = raw[name]
        if s.dtype == object or pd.api.types.is_string_dtype(s):
            cols[name] = pa.array(s.astype(object).where(s.notna(), None).tolist(), type=pa.string())
        else:
            cols[name] = pa.array(s, from_pandas=True)
    _no_duplicate_columns([str(c) for c in raw.columns], "<frame>")
    return pa.table(cols)


def _parse(arr: pa.Array, name: str, spec: Column, rules: Rules, source: str):
    if pa.types.is_null(arr.type):
        arr = pa.nulls(len(arr), pa.string())
    if rules.null_markers:
        arr = _markers_to_empty(arr, rules.null_markers)
    if pa.types.is_dictionary(arr.type) and (pa.types.is_string(arr.type.value_type)
                                             or pa.types.is_large_string(arr.type.value_type)):
        if spec.dtype == "category":
            return _parse_category(arr, name, rules)
        arr = arr.dictionary_decode()
    is_text = pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
    if not is_text:
        problem = text.wrong_type(spec.dtype, arr.type)
        if problem:
            raise LandingFileError(source, f"column {name!r} of type {spec.dtype}", problem,
                                   "D1: a wrong type fails the file; values are never converted silently.")
        return text.from_typed(arr, spec.dtype, rules.naive_timestamps)
    arr = text.as_text(arr)
    if spec.dtype in ("string", "category"):
        if spec.allowed is not None and name not in rules.identifiers:
            # Only an allowed value passes, and allowed values are clean (the contract checks them).
            n = len(arr)
            return text.text_values(arr, np.zeros(n, dtype=bool)), np.zeros(n, dtype=bool), text.no_codes(n), \
                text.empty_mask(arr)
        bad, codes = text.text_problems(arr, identifier=name in rules.identifiers)
        return text.text_values(arr, bad), bad, codes, text.empty_mask(arr)
    if spec.dtype == "float":
        return text.parse_float(arr)
    if spec.dtype == "int":
        return text.parse_int(arr)
    if spec.dtype == "bool":
        return text.parse_bool(arr)
    if spec.dtype == "datetime":
        return text.parse_datetime(arr, rules.naive_timestamps)
    raise AssertionError(f"unhandled dtype {spec.dtype}")


def _markers_to_empty(arr: pa.Array, markers: tuple[str, ...]) -> pa.Array:
    """Text equal to a declared null marker becomes an empty field (missing)."""
    value_set = pa.array(list(markers), type=pa.string())
    if pa.types.is_dictionary(arr.type) and pa.types.is_string(arr.type.value_type):
        values = text.as_text(arr.dictionary)
        hit = pc.fill_null(pc.is_in(values, value_set=value_set), False)
        if not pc.any(hit).as_py():
            return arr
        return pa.DictionaryArray.from_arrays(arr.indices, pc.if_else(hit, "", values))
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return arr
    hit = pc.fill_null(pc.is_in(arr, value_set=value_set), False)
    return pc.if_else(hit, "", arr) if pc.any(hit).as_py() else arr


def _parse_category(arr: pa.DictionaryArray, name: str, rules: Rules):
    """A dictionary-encoded category: each distinct value is judged once, rows follow their index."""
    n = len(arr)
    values = text.as_text(arr.dictionary)
    if len(values) == 0:
        return (pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), pa.array([], pa.string())),
                np.zeros(n, dtype=bool), text.no_codes(n), np.ones(n, dtype=bool))
    bad_d, codes_d = text.text_problems(values, identifier=name in rules.identifiers)
    empty_d = text.empty_mask(values)
    if not arr.null_count and not (bad_d.any() or empty_d.any()):
        return arr, np.zeros(n, dtype=bool), text.no_codes(n), np.zeros(n, dtype=bool)  # the usual case
    null = arr.indices.is_null().to_numpy(zero_copy_only=False)
    idx = np.where(null, 0, pc.fill_null(arr.indices, 0).to_numpy(zero_copy_only=False)).astype(np.int64)
    bad, codes, empty = bad_d[idx] & ~null, np.where(null, 0, codes_d[idx]).astype(np.uint8), empty_d[idx] | null
    drop = bad | empty
    if drop.any():
        arr = pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32), mask=drop), values)
    return arr, bad, codes, empty


def _not_allowed(values: pa.Array, allowed: list[str]) -> np.ndarray:
    """Rows holding a value outside `allowed` (nulls are judged by nullability, not here)."""
    allowed_arr = pa.array(allowed, type=pa.string())
    if not pa.types.is_dictionary(values.type):
        return ~pc.fill_null(pc.is_in(values, value_set=allowed_arr), True).to_numpy(zero_copy_only=False)
    # Judge the distinct values once; rows follow their index.
    known = pc.is_in(text.as_text(values.dictionary), value_set=allowed_arr).to_numpy(zero_copy_only=False)
    if known.all():
        return np.zeros(len(values), dtype=bool)
    null = values.is_null().to_numpy(zero_copy_only=False)
    idx = pc.fill_null(values.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return ~known[idx] & ~null


def _hint(codes: np.ndarray) -> str:
    kinds = {text.CODES[int(c)] for c in np.unique(codes[codes != 0])}
    if "naive" in kinds:
        return ("Timestamps carry no UTC offset and the contract refuses those (records.naive_timestamps: refuse); "
                "set it to 'utc' if the source writes UTC.")
    if "whitespace" in kinds:
        return "Identifiers are compared as delivered; the upstream pads them with whitespace."
    return ""


def _show(value) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return repr(value)


def validate_frame(raw: pa.Table | pd.DataFrame, columns: dict[str, Column], source: str,
                   rules: Rules = Rules(), first_row_number: int | None = None) -> ValidationResult:
    """Validate raw rows against the contract's columns; see the module docstring."""
    raw = _as_table(raw)
    names = raw.column_names
    expected = list(columns)
    missing = [c for c in expected if c not in names]
    if missing:
        extra = [c for c in names if c not in columns]
        stripped = [c for c in extra if c.strip() in missing]
        hint = (f"Columns {stripped} differ from the contract's only by surrounding whitespace." if stripped
                else f"Unexpected columns {extra} may be renamed versions of them." if extra else "")
        raise LandingFileError(source, f"columns {expected}", f"columns {names} (missing {missing})", hint)
    if first_row_number is None:
        first_row_number = 2 if file_format(source) == ".csv" else 1
    n = raw.num_rows
    reasons: dict[int, list[str]] = {}
    typed, null_rates = {}, {}
    parse_bad = {}

    def parse(name: str) -> tuple:
        arr = raw.column(name)
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
        return arr, _parse(arr, name, columns[name], rules, source)

    # Columns are parsed independently, in numpy and Arrow kernels that release the GIL: two at a time.
    with ThreadPoolExecutor(2) as pool:
        parsed = list(pool.map(parse, expected)) if n >= _PARALLEL_ROWS else [parse(c) for c in expected]
    for (name, spec), (arr, (values, bad, codes, empty)) in zip(columns.items(), parsed, strict=True):
        non_empty = n - int(empty.sum())
        n_bad = int(bad.sum())
        if non_empty and n_bad / non_empty > rules.wrong_type_share:
            sample = text.text_of(arr.filter(pa.array(bad))).to_pylist()[:3]
            raise LandingFileError(
                source, f"column {name!r} of type {spec.dtype}",
                f"{n_bad} of {non_empty} values not accepted as {spec.dtype} (e.g. {sample}; "
                f"{text.message(codes[bad][0])}), more than ingestion.wrong_type_share {rules.wrong_type_share:.0%}",
                _hint(codes))
        if n_bad:
            shown = text.text_of(arr.filter(pa.array(bad))).to_pylist()
            for i, v, c in zip(np.flatnonzero(bad).tolist(), shown, codes[bad], strict=True):
                reasons.setdefault(i, []).append(f"{name}: {v!r} {text.message(c)}")
        if not spec.nullable:
            for i in np.flatnonzero(empty).tolist():
                reasons.setdefault(i, []).append(
                    f"{name}: null where the contract requires a value (columns.{name}.nullable: false)")
        typed[name] = values
        parse_bad[name] = bad
        null_rates[name] = float(empty.mean()) if n else 0.0

    for name, spec in columns.items():
        values = typed[name]
        if spec.min is not None or spec.max is not None:
            for bound, op, sign in ((spec.min, pc.less, ">="), (spec.max, pc.greater, "<=")):
                if bound is None:
                    continue
                out = pc.fill_null(op(values, bound), False)
                rows = np.flatnonzero(out.to_numpy(zero_copy_only=False))
                if len(rows):
                    found = values.take(pa.array(rows)).to_pylist()
                    which = "min" if sign == ">=" else "max"
                    for i, v in zip(rows.tolist(), found, strict=True):
                        reasons.setdefault(i, []).append(
                            f"{name}: {_show(v)} violates {name} {sign} {bound} (columns.{name}.{which})")
        if spec.allowed is not None:
            rows = np.flatnonzero(_not_allowed(values, spec.allowed))
            if len(rows):
                shown = values.take(pa.array(rows)).to_pylist()
                for i, v in zip(rows.tolist(), shown, strict=True):
                    reasons.setdefault(i, []).append(
                        f"{name}: {v!r} violates {name} in {spec.allowed} (columns.{name}.allowed)")
    hashes = sorted_hashes = None
    for name, spec in columns.items():
        if spec.unique:
            h = hash_text(typed[name]) if spec.dtype in ("string", "category") else None
            later, hs = _later_duplicates(typed[name], h)
            if rules.identifiers and name == rules.identifiers[0]:
                hashes, sorted_hashes = h, hs
            for i, v in later:
                reasons.setdefault(i, []).append(f"{name}: duplicate value {v!r} (columns.{name}.unique)")
    if rules.timestamp is not None and rules.window is not None:
        _judge_window(typed[rules.timestamp], parse_bad[rules.timestamp], rules, source, reasons)

    table = pa.table({c: _published(typed[c], columns[c].dtype) for c in expected})
    extra = [c for c in names if c not in columns]
    result = ValidationResult(source, raw, table, null_rates, reasons, extra, hashes, first_row_number)
    result.sorted_id_hashes = sorted_hashes
    return result


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns decoded, as a reader of the lake file gets them."""
    return pa.table({f.name: table.column(f.name).cast(f.type.value_type) if pa.types.is_dictionary(f.type)
                     else table.column(f.name) for f in table.schema})


def _published(values: pa.Array, dtype: str) -> pa.Array:
    """The column in its lake type. Categories stay dictionary-encoded in memory; they are text in
    the lake file, whose schema does not record the encoding (see storage.write_table)."""
    if dtype == "category" and pa.types.is_dictionary(values.type):
        return values
    return values.cast(ARROW_TYPES[dtype])


def _later_duplicates(values: pa.Array, hashes: np.ndarray | None) -> tuple[list[tuple[int, object]], np.ndarray | None]:
    """Every occurrence of a non-null value after its first, in file order; and, for text, the
    sorted hashes of the non-null values (the id index reuses them)."""
    present = ~values.is_null().to_numpy(zero_copy_only=False) if values.null_count else None
    if hashes is not None:
        hs = np.sort(hashes if present is None else hashes[present])
        same = hs[1:] == hs[:-1]
        if not same.any():
            return [], hs  # the usual case, decided on the hashes alone
        repeated = np.isin(hashes, np.unique(hs[1:][same]))
        rows = np.flatnonzero(repeated if present is None else repeated & present)
    else:
        keep = np.ones(len(values), dtype=bool) if present is None else present
        rows = np.flatnonzero(keep)
        v = values.filter(pa.array(keep)).to_numpy(zero_copy_only=False)
        rows = rows[pd.Series(v).duplicated(keep=False).to_numpy()]
        hs = None
    seen, out = set(), []
    for i, v in zip(rows.tolist(), values.take(pa.array(rows, type=pa.int64())).to_pylist(), strict=True):
        if v in seen:
            out.append((i, v))
        seen.add(v)
    return out, hs


def _judge_window(ts: pa.Array, bad: np.ndarray, rules: Rules, source: str, reasons: dict[int, list[str]]) -> None:
    """Event times outside [start, end) of the partition are quarantined; all of them fail the file."""
    start, end = rules.window
    lo, hi = pa.scalar(start, ts.type), pa.scalar(end, ts.type)
    outside = pc.fill_null(pc.or_(pc.less(ts, lo), pc.greater_equal(ts, hi)), False).to_numpy(zero_copy_only=False)
    parsed = ~ts.is_null().to_numpy(zero_copy_only=False)
    if parsed.any() and outside[parsed].all():
        span = pc.min_max(ts)
        raise OutsidePartition(
            source, f"event times ({rules.timestamp}) in [{start.isoformat()}, {end.isoformat()}) {rules.window_setting}",
            f"all {int(parsed.sum())} parsed event times outside it, from {span['min'].as_py().isoformat()} to "
            f"{span['max'].as_py().isoformat()}",
            "Is the file delivered under the wrong day's name? It was left in the landing zone.")
    rows = np.flatnonzero(outside)
    for i, v in zip(rows.tolist(), ts.take(pa.array(rows, type=pa.int64())).to_pylist(), strict=True):
        reasons.setdefault(i, []).append(
            f"{rules.timestamp}: {v.isoformat()} is outside the partition's window [{start.isoformat()}, "
            f"{end.isoformat()}) {rules.window_setting}")


def _reason_kind(reason: str) -> str:
    body = reason.split(": ", 1)[-1]
    if "violates" in body:
        return "violates " + body.split("violates ", 1)[1]
    if body.startswith("duplicate"):
        return "duplicate"
    if body.startswith("null where"):
        return "null where the contract requires a value"
    if "outside the partition's window" in body:
        return "outside the partition's window"
    if "already ingested" in body:
        return "already ingested in another partition"
    if "was quarantined" in body:
        return "record quarantined"
    for code, msg in text.REASONS.items():
        if msg in body:
            return "unparseable" if code in ("float", "int", "bool", "datetime") else msg
    return body


# ---- the two kinds of landing file ------------------------------------------------------------
def partition_window(contract: Contract, partition: str) -> tuple[dt.datetime, dt.datetime]:
    day = dt.datetime.combine(dt.date.fromisoformat(partition), dt.time(), tzinfo=dt.UTC)
    return day - dt.timedelta(hours=contract.records.late_tolerance_hours), day + dt.timedelta(days=1)


def record_rules(contract: Contract, partition: str | None) -> Rules:
    window = partition_window(contract, partition) if partition else None
    return Rules(
        identifiers=(contract.record_id, contract.entity), naive_timestamps=contract.records.naive_timestamps,
        timestamp=contract.timestamp if partition else None, window=window,
        window_setting=f"(partition {partition}, records.late_tolerance_hours {contract.records.late_tolerance_hours:g})",
        wrong_type_share=contract.ingestion.wrong_type_share, null_markers=tuple(contract.ingestion.null_markers))


def validate_records(raw: pa.Table | pd.DataFrame, contract: Contract, source: str,
                     partition: str | None = None) -> ValidationResult:
    """Records of one landing file; with `partition`, event times must fall in its day (D1)."""
    return validate_frame(raw, contract.columns, source, record_rules(contract, partition))


def label_columns(contract: Contract) -> dict[str, Column]:
    return {
        contract.record_id: Column(dtype="string", nullable=False, unique=True),
        contract.label: Column(dtype="int", nullable=False, min=0, max=1),
    }


def validate_labels(raw: pa.Table | pd.DataFrame, contract: Contract, source: str) -> ValidationResult:
    rules = Rules(identifiers=(contract.record_id,), wrong_type_share=contract.ingestion.wrong_type_share,
                  null_markers=tuple(contract.ingestion.null_markers))
    return validate_frame(raw, label_columns(contract), source, rules)
