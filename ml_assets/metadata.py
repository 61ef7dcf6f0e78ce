"""Helpers that turn plain results into Dagster metadata: the UI is the metadata."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd


def md_table(df: pd.DataFrame, floatfmt: str = ".4f", max_rows: int = 50) -> dg.MarkdownMetadataValue:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else format(v, floatfmt)
        if v is None:
            return "–"
        return str(v).replace("|", "\\|")

    rows = df.head(max_rows)
    lines = ["| " + " | ".join(map(str, rows.columns)) + " |", "|" + "---|" * len(rows.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows.itertuples(index=False)]
    if len(df) > max_rows:
        lines.append(f"\n… {len(df) - max_rows} more rows")
    return dg.MetadataValue.md("\n".join(lines))


def clean(value: Any) -> Any:
    """Plain Python values only (numpy scalars and NaN confuse metadata rendering)."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def flat(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{k}": clean(v) for k, v in values.items() if clean(v) is not None}
