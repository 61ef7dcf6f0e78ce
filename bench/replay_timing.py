"""Wall time of the replay (the demo's story): per played day, the history bootstrap, and the whole run.

    .venv/bin/python bench/replay_timing.py [--home /tmp/bench-home] [--days 56] [--cards 3000]

Runs exactly what `ml-assets demo` runs (simulated drift story, one day at a time through the real
schedule, sensors and jobs) in a scratch ML_ASSETS_HOME, and reads each day's seconds from the
replay's own timeline. The goal (issue: speed where the user waits) is at most 15 s for one new day;
a day with a retrain also trains, registers and gates a model, so it is reported apart. Results are
printed and written to bench/results/replay_timing.json. Not a test: measured and reported.
"""

from __future__ import annotations

import argparse
import time

from _common import machine, save, scratch_home


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default=None, help="scratch ML_ASSETS_HOME (default: a new temp dir)")
    parser.add_argument("--days", type=int, default=None, help="simulated days (default: the demo's)")
    parser.add_argument("--cards", type=int, default=None, help="cards (default: the demo's)")
    args = parser.parse_args()
    home = scratch_home(args.home)

    import pandas as pd

    from ml_assets import cli
    from ml_assets.replay import TIMELINE_CSV

    argv = ["demo"] + (["--days", str(args.days)] if args.days else []) + (
        ["--cards", str(args.cards)] if args.cards else [])
    t0 = time.perf_counter()
    code = cli.main(argv)
    total = time.perf_counter() - t0
    timeline = pd.read_csv(home / "lake" / TIMELINE_CSV)
    plain = timeline[timeline["sensor"] != "requested"]["seconds"]
    retrain = timeline[timeline["sensor"] == "requested"]["seconds"]
    result = {
        "machine": f"{machine()} at the end",
        "exit_code": code,
        "total_s": round(total, 1),
        "days_played": len(timeline),
        "day_s_median": round(float(plain.median()), 2),
        "day_s_p90": round(float(plain.quantile(0.9)), 2),
        "day_s_max": round(float(plain.max()), 2),
        "retrain_day_s": [round(float(x), 1) for x in retrain],
        "bootstrap_and_simulation_s": round(total - float(timeline["seconds"].sum()), 1),
        "goal_day_s": 15,
    }
    save("replay_timing", result)


if __name__ == "__main__":
    main()
