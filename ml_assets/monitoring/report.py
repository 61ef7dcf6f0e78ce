"""The human-readable drift report (RELIABILITY.md M7), rendered by Evidently 0.7.23.

The decision is made by :mod:`ml_assets.monitoring.drift` (on the critical path, in
`drift_report`); this report is for a person clicking through from the asset to see *what*
moved, rendered off the critical path (the `evidently_report` asset) for the days a person
will open. So that it agrees with the decision, Evidently is told to use the same method
(PSI) and threshold (the contract's `psi_act`) instead of its preset's own choices (which
switch test with sample size), and the page opens with the pipeline's own verdict for the day.
Frames are sampled to a few thousand rows: the histograms look the same and render in a
fraction of the time.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import tempfile
from pathlib import Path

import pandas as pd

REPORT_ROWS = 5000
"""Rows sampled from each side for the HTML report (the decision itself uses every row)."""
REPORT_STATUSES = ("act", "bug", "watch")


def worth_rendering(day: str, status: str, previous_status: str | None, always: bool) -> bool:
    """The days a person opens a drift report for: a new watch/act episode (the first day of it), every
    day with bug signals, and a weekly look (Mondays); a drift that persists is not re-rendered daily."""
    if always or status == "bug" or dt.date.fromisoformat(day).weekday() == 0:
        return True
    return status in REPORT_STATUSES and status != previous_status


def verdict_html(verdict: dict) -> str:
    """The pipeline's own verdict for the day, as the first thing on the page."""
    rows = "".join(f"<li>{html.escape(str(r))}</li>" for r in verdict.get("reasons", []))
    drifted = ", ".join(verdict.get("drifted_features") or []) or "none"
    return (f'<section style="font-family:sans-serif;margin:16px;padding:12px;border:2px solid #444">'
            f'<h2>ml_assets verdict for {html.escape(str(verdict.get("day")))}: '
            f'{html.escape(str(verdict.get("status")))}</h2>'
            f'<p>Judged on {verdict.get("rows")} rows ({html.escape(str(verdict.get("window_first")))} .. '
            f'{html.escape(str(verdict.get("window_last")))}); max PSI {verdict.get("max_psi")}; drifted features the '
            f'model relies on: {html.escape(drifted)}. Below, Evidently with the same method (PSI) and threshold.</p>'
            f'<ul>{rows}</ul></section>')


def write_evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    path: Path,
    title: str | None = None,
    psi_threshold: float | None = None,
    header: str = "",
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
    preset = DataDriftPreset() if psi_threshold is None else DataDriftPreset(method="psi", threshold=psi_threshold)
    reference = reference.sample(n=REPORT_ROWS, random_state=0) if len(reference) > REPORT_ROWS else reference
    current = current.sample(n=REPORT_ROWS, random_state=0) if len(current) > REPORT_ROWS else current
    snapshot = Report([preset]).run(current_data=current, reference_data=reference, name=title)
    text = snapshot.get_html_str(as_iframe=False)
    if title:
        text = text.replace("<head>", f"<head>\n<title>{html.escape(title)}</title>", 1)
    if header:
        text = text.replace("<body>", "<body>\n" + header, 1) if "<body>" in text else header + text

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
                            titles: dict[Path, str] | None = None, workers: int | None = None,
                            psi_threshold: float | None = None, headers: dict[Path, str] | None = None) -> list[Path]:
    """Render one report per (path, current frame); in spawned worker processes when there
    are enough of them (a 30-day backfill renders in about half the time on 2 cores)."""
    titles, headers = titles or {}, headers or {}
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    if workers <= 1 or len(currents) < PARALLEL_MIN_REPORTS:
        return [write_evidently_report(reference, cur, path, titles.get(path), psi_threshold, headers.get(path, ""))
                for path, cur in currents.items()]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent holds torch, DuckDB and Dagster state that must not be forked.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(write_evidently_report, reference, cur, path, titles.get(path), psi_threshold,
                               headers.get(path, "")) for path, cur in currents.items()]
        return [f.result() for f in futures]
