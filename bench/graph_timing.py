"""Wall time of the whole asset graph, broken down by asset group (issue: per-group timing).

    .venv/bin/python bench/graph_timing.py [--days 30] [--cards 4000] [--home /tmp/bench-home]

Simulates fresh data into a scratch ML_ASSETS_HOME, materializes every asset in one run
(as `ml-assets demo` does) and reads each step's duration from the run's own events.
Results are printed and written to bench/results/graph_timing.json. Not a test: timings
are measured and reported, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections import defaultdict

from _common import machine, save, scratch_home


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--cards", type=int, default=4000)
    parser.add_argument("--home", default=None, help="scratch ML_ASSETS_HOME (default: a new temp dir)")
    args = parser.parse_args()
    scratch_home(args.home)

    import dagster as dg

    from ml_assets.cli import run_graph
    from ml_assets.definitions import build_definitions
    from ml_assets.settings import current_settings
    from ml_assets.simulate.generator import SimulationConfig, simulate

    settings = current_settings()
    t0 = time.perf_counter()
    sim = simulate(settings.landing_dir, SimulationConfig(start_date=dt.date(2026, 1, 1), days=args.days,
                                                         n_cards=args.cards))
    simulate_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result, first, last = run_graph(settings)
    graph_s = time.perf_counter() - t1
    if not result.success:
        raise SystemExit("the graph run failed; see the log above")

    graph = build_definitions(settings).resolve_asset_graph()
    group_of = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    starts, per_step = {}, {}
    with dg.DagsterInstance.get() as instance:  # the run's event log carries the timestamps
        entries = instance.all_logs(result.run_id)
    for entry in entries:
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            per_step[event.step_key] = entry.timestamp - starts[event.step_key]
    per_group: dict[str, float] = defaultdict(float)
    for step, seconds in per_step.items():
        per_group[group_of.get(step, "other")] += seconds
    report = {
        "machine": machine(),
        "days": args.days, "cards": args.cards, "rows": sim.rows, "partitions": f"{first}..{last}",
        "simulate_s": round(simulate_s, 1), "graph_run_s": round(graph_s, 1),
        "per_group_s": {g: round(s, 1) for g, s in sorted(per_group.items(), key=lambda kv: -kv[1])},
        "per_asset_s": {a: round(s, 1) for a, s in sorted(per_step.items(), key=lambda kv: -kv[1])},
    }
    out = save("graph_timing", report)
    print(f"{sim.rows} rows, {args.days} days: simulate {simulate_s:.1f}s, graph run {graph_s:.1f}s")
    for group, seconds in report["per_group_s"].items():
        print(f"  {group:<12} {seconds:7.1f}s")
    print(f"per asset: {report['per_asset_s']}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
