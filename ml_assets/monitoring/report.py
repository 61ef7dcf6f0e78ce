"""The human-readable drift report (RELIABILITY.md M7), rendered by Evidently 0.7.23.

Evidently is used for the report only: its drift verdicts switch method with sample size
(see ENVIRONMENT.md), so the numbers the pipeline acts on come from
:mod:`ml_assets.monitoring.drift`. The report is for a person clicking through from the
asset in the UI to see *what* moved.
"""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path

import pandas as pd


def write_evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    path: Path,
    title: str | None = None,
) -> Path:
    """Render a ``DataDriftPreset`` report of ``current`` against ``reference`` to ``path`` as HTML.

    Written to a temporary file in the same folder, fsynced, then ``os.replace``-d onto
    ``path``, so a crash or retry never leaves a truncated report where the UI links to
    (D5). ``title`` becomes the page's ``<title>``.

    Notes on the Evidently 0.7.23 API, checked in the installed package:
    ``Report.run(current_data, reference_data)`` takes the *current* data first, and
    ``Snapshot.save_html`` silently writes nothing unless given a ``str`` path, so the
    HTML is taken from ``Snapshot.get_html_str(as_iframe=False)`` and written here.
    Both frames must have at least one column (Evidently raises ``ValueError`` otherwise).
    """
    # Imported here: importing Evidently takes seconds, and modules that only need the
    # statistics (or Dagster loading the code location) should not pay for it.
    from evidently import Report
    from evidently.presets import DataDriftPreset

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference, name=title)
    text = snapshot.get_html_str(as_iframe=False)
    if title:
        text = text.replace("<head>", f"<head>\n<title>{html.escape(title)}</title>", 1)

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# Below this many reports, starting worker processes (each imports Evidently, ~8 s) costs
# more than it saves.
PARALLEL_MIN_REPORTS = 6


def write_evidently_reports(reference: pd.DataFrame, currents: dict[Path, pd.DataFrame],
                            titles: dict[Path, str] | None = None, workers: int | None = None) -> list[Path]:
    """Render one report per (path, current frame); in spawned worker processes when there
    are enough of them (a 30-day backfill renders in about half the time on 2 cores)."""
    titles = titles or {}
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    if workers <= 1 or len(currents) < PARALLEL_MIN_REPORTS:
        return [write_evidently_report(reference, cur, path, titles.get(path)) for path, cur in currents.items()]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent holds torch, DuckDB and Dagster state that must not be forked.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(write_evidently_report, reference, cur, path, titles.get(path))
                   for path, cur in currents.items()]
        return [f.result() for f in futures]
