"""Daily partitions of the dataset, from its contract."""

from __future__ import annotations

import dagster as dg

from ml_assets.contract import Contract


def daily_partitions(contract: Contract) -> dg.DailyPartitionsDefinition:
    p = contract.partitions
    return dg.DailyPartitionsDefinition(
        start_date=p.start_date.isoformat(),
        end_date=p.end_date.isoformat() if p.end_date else None,
        timezone="UTC",
    )
