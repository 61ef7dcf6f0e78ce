"""Model performance on labelled data, with uncertainty (RELIABILITY.md M3, P2, P3).

A single AUC number on a few hundred delayed labels moves by more than the 0.005 the
catalog cares about from sampling noise alone, so every decision made from performance
carries a bootstrap confidence interval (the measures are in `ml_assets.metrics`), and a
decline is only "real" when it holds on consecutive windows (M3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml_assets.metrics import bootstrap_metric, classification_metrics, roc_auc


@dataclass(frozen=True)
class LabelledDay:
    """One day's scores joined with the labels that arrived for it."""

    day: str  # the event day that was scored
    model_version: str
    threshold: float
    y: np.ndarray
    scores: np.ndarray

    @property
    def positives(self) -> int:
        return int(self.y.sum())

    @property
    def negatives(self) -> int:
        return int(self.y.size - self.y.sum())


def pool_window(days: list[LabelledDay], min_per_class: int, max_days: int) -> list[LabelledDay]:
    """The newest days scored by the newest day's model, pooled backwards until each class has
    `min_per_class` examples (or `max_days` days): a tiny day is judged with the days before it, and
    an AUC on a handful of positives decides nothing. `days` is oldest first."""
    if not days:
        return []
    version = days[-1].model_version
    window: list[LabelledDay] = []
    for d in reversed(days):
        if d.model_version != version or len(window) == max_days:
            break
        window.insert(0, d)
        if sum(x.positives for x in window) >= min_per_class and sum(x.negatives for x in window) >= min_per_class:
            break
    return window


@dataclass
class WindowResult:
    """AUC (with a bootstrap CI), precision and recall of one pooled window, and on how much data."""

    first_day: str
    last_day: str
    days: int
    rows: int
    positives: int
    negatives: int
    model_version: str
    enough: bool  # both classes reached min_per_class
    roc_auc: float = float("nan")
    auc_ci_low: float = float("nan")
    auc_ci_high: float = float("nan")
    precision: float = float("nan")
    recall: float = float("nan")


def evaluate_window(window: list[LabelledDay], min_per_class: int, n_resamples: int, seed: int = 0) -> WindowResult:
    y = np.concatenate([d.y for d in window]) if window else np.array([], dtype=int)
    s = np.concatenate([d.scores for d in window]) if window else np.array([], dtype=float)
    pos = int(y.sum())
    result = WindowResult(window[0].day if window else "", window[-1].day if window else "", len(window),
                          int(y.size), pos, int(y.size - pos), window[-1].model_version if window else "",
                          enough=pos >= min_per_class and (y.size - pos) >= min_per_class)
    if window and np.unique(y).size == 2:
        m = classification_metrics(y, s, window[-1].threshold)
        result.precision, result.recall = m["precision"], m["recall"]
        ci = bootstrap_metric(y, s, roc_auc, n_resamples=n_resamples, seed=seed)
        result.roc_auc, result.auc_ci_low, result.auc_ci_high = ci.value, ci.low, ci.high
    return result


@dataclass
class DeclineState:
    """M3 for one day: is this window below the reference, and is a decline confirmed?

    A window is *below* when its whole AUC CI lies under `reference - auc_decline`, where the
    reference is the lower end of the model's golden-set AUC CI (so a golden AUC that was lucky
    does not make stable data look like a decline). A decline is *confirmed* when `consecutive`
    disjoint windows in a row are below. Once confirmed, the episode stays open — even if the
    golden set is refreshed and the champion re-baselined lower — until a new model serves or
    the live AUC is back (its whole CI at the episode's reference), so a retrain that was refused is
    asked for again after the cooldown.
    """

    below: bool
    below_streak: int  # consecutive disjoint windows below, this one included
    declining: bool
    episode_start: str | None  # the first day of the episode's first low window
    episode_reference: float | None
    reason: str


def decline_state(window: WindowResult, reference_low: float | None, previous: list[dict], auc_decline: float,
                  consecutive: int) -> DeclineState:
    """`previous`: stored states of earlier days (oldest first), each with first_day, last_day, model_version,
    below, below_streak, declining, episode_start, episode_reference."""
    if not window.enough or np.isnan(window.auc_ci_high):
        same = [p for p in previous if p.get("model_version") == window.model_version]
        last = same[-1] if same else None
        if last and last.get("declining"):
            return DeclineState(False, 0, True, last.get("episode_start"), last.get("episode_reference"),
                                f"not enough labels in this window ({window.positives} positives, "
                                f"{window.negatives} negatives); the open decline episode stands")
        return DeclineState(False, 0, False, None, None,
                            f"not judged: {window.positives} positives and {window.negatives} negatives in "
                            f"{window.days} day(s) (min_per_class not reached)")
    same = [p for p in previous if p.get("model_version") == window.model_version]
    open_episode = next((p for p in reversed(same) if p.get("declining")), None) if same and same[-1].get(
        "declining") else None
    if open_episode is not None:
        ref = float(open_episode["episode_reference"])
        # Closed only on evidence that the AUC is back (the whole CI at the reference), not because one noisy
        # window merely failed to be confidently below it.
        if window.auc_ci_low >= ref - auc_decline:
            return DeclineState(False, 0, False, None, None,
                                f"recovered: AUC CI [{window.auc_ci_low:.4f}, {window.auc_ci_high:.4f}] is back at the "
                                f"episode's reference {ref:.4f} - {auc_decline}")
        return DeclineState(True, int(open_episode.get("below_streak", consecutive)) + 1, True,
                            open_episode["episode_start"], ref,
                            f"decline continues since {open_episode['episode_start']}: AUC {window.roc_auc:.4f} "
                            f"(CI high {window.auc_ci_high:.4f}) < {ref:.4f} - {auc_decline}")
    if reference_low is None:
        return DeclineState(False, 0, False, None, None, "no golden-set reference for this model version yet")
    below = bool(window.auc_ci_high < reference_low - auc_decline)
    # The previous window that does not overlap this one, judged for the same model.
    before = next((p for p in reversed(same) if p.get("last_day", "") < window.first_day and p.get("enough")), None)
    streak = (int(before.get("below_streak", 0)) + 1 if before and before.get("below") else 1) if below else 0
    start = (before.get("episode_start") or before.get("first_day")) if below and before and before.get(
        "below") else (window.first_day if below else None)
    declining = below and streak >= consecutive
    verdict = (f"AUC {window.roc_auc:.4f}, 95% CI [{window.auc_ci_low:.4f}, {window.auc_ci_high:.4f}] on "
               f"{window.rows} labels ({window.positives} positives, {window.days} day(s)) vs reference "
               f"{reference_low:.4f} - {auc_decline}: " + ("below" if below else "not below")
               + (f"; {streak} consecutive disjoint window(s) below (confirmed at {consecutive})" if below else ""))
    return DeclineState(below, streak, declining, start, reference_low if below else None, verdict)
