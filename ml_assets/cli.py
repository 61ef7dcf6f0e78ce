"""`ml-assets`: simulate data, run the demo, inspect lineage, start the UI."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

from ml_assets import console
from ml_assets.contract.model import ContractError
from ml_assets.settings import (
    DEFAULT_DAGSTER_PORT,
    DEFAULT_HOST,
    DEFAULT_MLFLOW_UI_PORT,
    DEFAULT_REPORTS_PORT,
    Settings,
    SettingsError,
    current_settings,
)


def _simulation_config(args: argparse.Namespace, settings: Settings):
    from ml_assets.contract import load_contract
    from ml_assets.simulate.generator import SimulationConfig

    contract = load_contract(settings.contract_path)
    start = dt.date.fromisoformat(args.start) if args.start else contract.partitions.start_date
    days = args.days
    if days is None:
        end = contract.partitions.end_date
        days = (end - start).days if end else 30
    return SimulationConfig(start_date=start, days=days, n_cards=args.cards, seed=args.seed, scenario=args.scenario,
                            scenario_start_day=args.scenario_start_day, label_delay_days=contract.labels.delay_days,
                            scenario_days=args.scenario_days, ramp_days=args.ramp_days)


def refuse_to_simulate_for_another_dataset(settings: Settings) -> None:
    """The simulator writes the demo's card transactions; for any other contract they would only be
    quarantined or fail, so say what to do instead."""
    from ml_assets.contract import DEFAULT_CONTRACT, load_contract

    contract, demo = load_contract(settings.contract_path), load_contract(DEFAULT_CONTRACT)
    if (contract.records, contract.labels.dir, contract.labels.column, set(contract.columns)) != (
            demo.records, demo.labels.dir, demo.labels.column, set(demo.columns)):
        raise SystemExit(
            f"`ml-assets simulate` writes the demo card-transaction dataset, but ML_ASSETS_CONTRACT "
            f"({settings.contract_path}) declares {contract.name!r}. Deliver your own files to "
            f"{settings.landing_dir}/{contract.records.dir}/<YYYY-MM-DD>.csv and "
            f"{settings.landing_dir}/{contract.labels.dir}/<YYYY-MM-DD>.csv, then run `ml-assets demo --no-simulate`."
        )


def cmd_simulate(args: argparse.Namespace) -> int:
    from ml_assets.simulate.generator import simulate

    settings = current_settings()
    refuse_to_simulate_for_another_dataset(settings)
    cfg = _simulation_config(args, settings)
    res = simulate(settings.landing_dir, cfg)
    print(f"simulated {cfg.days} days from {cfg.start_date} into {res.landing_dir}: {res.rows} transactions, "
          f"fraud rate {res.fraud_rate:.2%}, {len(res.label_files)} label deliveries (delay {cfg.label_delay_days} d), "
          f"scenario {cfg.scenario}")
    return 0


def run_graph(settings: Settings, first: str | None = None, last: str | None = None, instance=None):
    """Materialize every asset (and its checks) in one run over a partition range."""
    import contextlib

    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets.ingestion.ingest import landing_partitions
    from ml_assets.instance import ensure_dagster_home
    from ml_assets.storage import LocalStore

    ensure_dagster_home(settings)
    defs = build_definitions(settings)
    landing = LocalStore(settings.landing_dir)
    from ml_assets.contract import load_contract

    contract = load_contract(settings.contract_path)
    days = landing_partitions(landing, contract.records.dir) if first is None else None
    if days is not None and not days:
        raise SystemExit(f"no landing files under {settings.landing_dir / contract.records.dir} (expected "
                         f"<YYYY-MM-DD>.csv or .parquet, one per day): run `ml-assets simulate` for the demo, or "
                         f"deliver your dataset's files there")
    first = first or days[0]
    last = last or days[-1]
    job = defs.resolve_implicit_global_asset_job_def()
    with (contextlib.nullcontext(instance) if instance else dg.DagsterInstance.get()) as instance:
        result = job.execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last,
                  "ml_assets/trigger": "demo"},
            raise_on_error=False,
            run_config=console.run_config(log_path(settings, "demo")),
        )
    return result, first, last


def summary(settings: Settings) -> str:
    import pandas as pd

    from ml_assets.contract import load_contract
    from ml_assets.datasets.lake import current_golden_version
    from ml_assets.ingestion.ingest import read_partitions
    from ml_assets.monitoring.lake import read_verdict
    from ml_assets.registry.mlflow_registry import CHAMPION, Registry
    from ml_assets.storage import LocalStore

    contract = load_contract(settings.contract_path)
    lake = LocalStore(settings.lake_dir)
    lines = []
    raw = read_partitions(lake, "raw_transactions")
    quarantined = read_partitions(lake, "quarantine/raw_transactions")
    lines.append(f"rows ingested: {len(raw)} valid, {len(quarantined)} quarantined "
                 f"(delivered {len(raw) + len(quarantined)})")
    registry = Registry(settings.mlflow_tracking_uri, f"{contract.name}_model", contract.name)
    champ = registry.alias(CHAMPION)
    if champ:
        t = champ.tags
        gv = current_golden_version(lake, contract)
        lines.append(f"champion: {champ.name} v{champ.version}  golden set {gv}: "
                     f"ROC AUC {float(t.get(f'golden_{gv}_roc_auc', 'nan')):.4f}, precision "
                     f"{float(t.get(f'golden_{gv}_precision', 'nan')):.3f}, "
                     f"recall {float(t.get(f'golden_{gv}_recall', 'nan')):.3f}")
        lines.append(f"aliases: {registry.aliases()}")
    else:
        lines.append("champion: none (no model passed the gates)")
    days = sorted(k.rsplit("/", 1)[-1].removesuffix(".json") for k in lake.list("drift_report") if k.endswith(".json"))
    if days:
        lines.append("drift verdict per day (rows judged, max PSI, what drove it):")
        verdicts = [read_verdict(lake, day) for day in days]
        warmup = [v["day"] for v in verdicts if v["status"] == "warm_up"]
        if warmup:
            lines.append(f"  {warmup[0]} .. {warmup[-1]}  warm-up: less than a full window of history, not judged")
        for v in verdicts:
            if v["status"] == "warm_up":
                continue
            psi = f"max PSI {v['max_psi']:.3f}" if v.get("max_psi") is not None else "max PSI -"
            drove = ", ".join(v.get("drifted_features") or v.get("bug_features") or [])
            lines.append(f"  {v['day']}  {v['status']:<10}  {v['rows']:>6} rows  {psi}" + (f"  {drove}" if drove
                                                                                            else ""))
    perf = read_partitions(lake, "model_performance")
    if not perf.empty and "roc_auc" in perf:
        perf = perf[perf["roc_auc"].notna()]
        if len(perf):
            aucs = pd.to_numeric(perf["roc_auc"])
            lines.append(f"delayed-label ROC AUC over {len(perf)} days: min {aucs.min():.4f}, "
                         f"mean {aucs.mean():.4f}")
    return "\n".join(lines)


# The story the demo tells by default: 4 stable weeks of history and a first model, then the days played one by one;
# from day 31 the world drifts (over 4 days) and fraudsters change their ways, the decline is confirmed on delayed
# labels, one retrain learns the new regime and is promoted, and the AUC recovers.
DEMO_STORY = {"scenario": "drift", "days": 56, "cards": 3000, "scenario_start_day": 31, "ramp_days": 4,
              "bootstrap_days": 28}
STATIC_DEMO = {"scenario": "none", "days": 30, "cards": 4000}


def cmd_demo(args: argparse.Namespace) -> int:
    """The story by default (a replay: stable weeks, drift, decline, one retrain, recovery); --static runs the
    whole graph once over the simulated days instead."""
    if args.no_simulate and not args.static:
        # The story needs the simulator's drift; with your own files, one run of the whole graph (or
        # `ml-assets replay --source DIR` to play them day by day).
        args.static = True
    if not args.static:
        return cmd_replay(args)
    for k, v in STATIC_DEMO.items():  # the story's defaults do not apply to a static run
        if getattr(args, k) == DEMO_STORY.get(k):
            setattr(args, k, v)
    settings = current_settings()
    t0 = time.perf_counter()
    if not args.no_simulate:
        cmd_simulate(args)
    result, first, last = run_graph(settings)
    took = time.perf_counter() - t0
    print()
    print(f"== ml_assets demo: whole asset graph, partitions {first} .. {last}, run {result.run_id} "
          f"({'success' if result.success else 'FAILED'}, {took:.0f}s) ==")
    print(summary(settings))
    print(f"\nData, registry and instance are under {settings.home}. Browse them with `ml-assets dev` "
          f"(Dagster UI at http://127.0.0.1:3000).")
    if not result.success:
        from ml_assets.orchestration import failed_checks

        for event in result.all_events:
            if event.is_step_failure:
                print(f"step {event.step_key} failed: {event.event_specific_data.error.message}", file=sys.stderr)
        with _instance() as instance:
            for check in failed_checks(instance, result.run_id):
                print(f"  failed check {check}", file=sys.stderr)
        return 1
    return 0


def _instance():
    import dagster as dg

    return dg.DagsterInstance.get()


def log_path(settings: Settings, what: str) -> Path:
    """Where a CLI-started run's full log goes (the console shows progress only)."""
    return settings.home / "logs" / f"{what}.log"


def run_replay(settings: Settings, source: Path, bootstrap_days: int, days: int | None = None, instance=None,
               log=print) -> list:
    """Play the days of `source` through the real Dagster machinery (see ml_assets.replay); returns the lines."""
    import contextlib

    import dagster as dg

    from ml_assets.contract import load_contract
    from ml_assets.definitions import build_definitions
    from ml_assets.instance import ensure_dagster_home
    from ml_assets.registry.mlflow_registry import Registry
    from ml_assets.replay import ReplayError, bootstrap, make_replay, write_timeline

    ensure_dagster_home(settings)
    contract = load_contract(settings.contract_path)
    defs = build_definitions(settings)
    registry = Registry(settings.mlflow_tracking_uri, f"{contract.name}_model", contract.name,
                        (settings.mlflow_dir / "artifacts").as_uri())
    with (contextlib.nullcontext(instance) if instance else dg.DagsterInstance.get()) as instance:
        r = make_replay(defs, instance, contract, source, settings.landing_dir, settings.lake_dir, registry,
                        settings.alerts_path, log_path(settings, "replay"))
        available = r.source_days()
        if len(available) <= bootstrap_days:
            raise ReplayError(f"{len(available)} days of files under {source / contract.records.dir}, but "
                              f"--bootstrap-days is {bootstrap_days}: the loop needs days after the history")
        r.alert_tick()  # the failure sensor starts watching from here, as the daemon's first tick does
        bootstrap(r, available[:bootstrap_days], log)
        for day in available[bootstrap_days:][: days]:
            log(r.play(day).text())
        csv, png = write_timeline(r)
        log(f"timeline: {csv}\nplot:     {png}")
        return r.lines


def cmd_replay(args: argparse.Namespace) -> int:
    from ml_assets.replay import ReplayError, reset_home
    from ml_assets.simulate.generator import simulate

    settings = current_settings()
    t0 = time.perf_counter()
    source = Path(args.source).resolve() if args.source else settings.home / "source"
    if not args.source:
        refuse_to_simulate_for_another_dataset(settings)
        cfg = _simulation_config(args, settings)
        if source.exists():
            import shutil

            shutil.rmtree(source)
        res = simulate(source, cfg)
        print(f"simulated {cfg.days} days from {cfg.start_date} into {source}: {res.rows} transactions, fraud rate "
              f"{res.fraud_rate:.2%}, scenario {cfg.scenario} from day {cfg.scenario_start_day}")
    try:
        reset_home(settings.home, source)
        lines = run_replay(settings, source, args.bootstrap_days, args.play_days)
    except ReplayError as e:
        print(f"replay stopped: {e}", file=sys.stderr)
        return 1
    retrains = [ln for ln in lines if ln.sensor == "requested"]
    print(f"\n== ml_assets replay: {len(lines)} days after {args.bootstrap_days} days of history, "
          f"{len(retrains)} retrain(s), {time.perf_counter() - t0:.0f}s ==")
    for ln in retrains:
        print(f"  {ln.day}: retrain {ln.retrain_outcome} — {ln.sensor_reason[:160]}")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from ml_assets.contract import load_contract
    from ml_assets.registry.mlflow_registry import Registry

    settings = current_settings()
    contract = load_contract(settings.contract_path)
    tracking = settings.tracking_uri
    if tracking.startswith("sqlite:///") and not Path(tracking.removeprefix("sqlite:///")).is_file():
        # Looking must not create: opening a SQLite URI would create an empty MLflow database.
        print(f"no MLflow registry at {tracking.removeprefix('sqlite:///')} yet: run the pipeline first "
              "(`ml-assets demo`)", file=sys.stderr)
        return 1
    registry = Registry(tracking, f"{contract.name}_model", contract.name)
    ref = registry.alias(args.alias) if args.alias else registry.version(args.version)
    if ref is None:
        print(f"no model version has alias {args.alias!r}", file=sys.stderr)
        return 1
    t = ref.tags
    run = registry.client.get_run(ref.run_id) if ref.run_id else None
    out = {
        "model": f"{ref.name} v{ref.version}",
        "aliases": [a for a, v in registry.aliases().items() if v == ref.version],
        "data": {k: t.get(k) for k in ("training_set_hash", "training_partitions", "training_date_range",
                                       "training_rows", "golden_version", "golden_hash")},
        "run": {"dagster_run_id": t.get("dagster_run_id"), "training_dagster_run_id": t.get("training_dagster_run_id"),
                "mlflow_run_id": ref.run_id, "code_version": t.get("code_version"),
                "checkpoint_run_key": t.get("checkpoint_run_key"), "checkpoint_uri": t.get("checkpoint_uri")},
        "params": dict(run.data.params) if run else {},
        "metrics": {"validation": dict(run.data.metrics) if run else {},
                    "golden_set": {k: t.get(k) for k in t if k.startswith("golden_") and k != "golden_version"
                                   and k != "golden_hash"}},
        "artifact_sha256": t.get("artifact_sha256"),
        "promotion": {k: t.get(k) for k in t if k.startswith("promotion_")},
    }
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(f"{out['model']}  aliases: {', '.join(out['aliases']) or '-'}")
        for section in ("data", "run", "params", "metrics", "promotion"):
            print(f"{section}:")
            for k, v in out[section].items():
                print(f"  {k}: {v}")
        print(f"artifact_sha256: {out['artifact_sha256']}")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from ml_assets.dev import run_dev

    return run_dev(current_settings(), host=args.host, port=args.port, mlflow_port=args.mlflow_port,
                   reports_port=args.reports_port, dagster_args=args.dagster_args)


def cmd_serve_reports(args: argparse.Namespace) -> int:
    from ml_assets.definitions import lake_store
    from ml_assets.serve import reports_server

    server = reports_server(lake_store(current_settings()), args.host, args.port)
    print(f"serving the lake's reports/ at http://{server.server_address[0]}:{server.server_address[1]}/reports/",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C is how a person stops it
        print("report server stopped", flush=True)
    finally:
        server.server_close()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ml_assets.asset_checks import run_checks

    return run_checks(current_settings(), junit_path=Path(args.junit) if args.junit else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ml-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def sim_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--days", type=int, default=None, help="days to simulate (default: the contract's partitions)")
        p.add_argument("--start", default=None, help="first day, YYYY-MM-DD (default: the contract's start_date)")
        p.add_argument("--cards", type=int, default=4000, help="number of cards (entities)")
        p.add_argument("--seed", type=int, default=2026)
        from ml_assets.simulate.generator import SCENARIOS

        p.add_argument("--scenario", default="none", choices=SCENARIOS, help="failure to inject")
        p.add_argument("--scenario-start-day", type=int, default=20, help="first day (0-based) the scenario affects")
        p.add_argument("--scenario-days", type=int, default=None, help="how many days it lasts (default: to the end)")
        p.add_argument("--ramp-days", type=int, default=7, help="drift scenarios: days to reach full size (0: abrupt)")

    p = sub.add_parser("simulate", help="write demo landing files (transactions + delayed labels)")
    sim_args(p)
    p.set_defaults(fn=cmd_simulate)
    def replay_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--source", default=None, help="directory of dated landing files to replay (default: simulate)")
        p.add_argument("--bootstrap-days", type=int, default=28, help="days of history before the first model")
        p.add_argument("--play-days", type=int, default=None, help="stop after this many days of the loop")

    p = sub.add_parser("demo", help="the closed loop, watched: a replay of simulated days with drift (or --static: "
                                    "the whole graph once)")
    sim_args(p)
    replay_args(p)
    p.add_argument("--static", action="store_true", help="materialize the whole graph once over the simulated days")
    p.add_argument("--no-simulate", action="store_true", help="--static: use the landing files already there")
    p.set_defaults(fn=cmd_demo, **DEMO_STORY)
    p = sub.add_parser("replay", help="play days through the real schedule, sensors and jobs, one day at a time")
    sim_args(p)
    replay_args(p)
    p.set_defaults(fn=cmd_replay)
    p = sub.add_parser("lineage", help="data -> run -> metrics of a model version (T4)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--alias", help="champion | challenger | previous")
    g.add_argument("--version")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_lineage)
    p = sub.add_parser("dev", help="start the Dagster UI, the MLflow UI and the report server on this project")
    p.add_argument("--host", default=DEFAULT_HOST, help="address every server binds (default %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_DAGSTER_PORT, help="Dagster UI port (default %(default)s)")
    p.add_argument("--mlflow-port", type=int, default=DEFAULT_MLFLOW_UI_PORT,
                   help="MLflow UI port (default %(default)s; local only: staging/prod link their tracking server)")
    p.add_argument("--reports-port", type=int, default=DEFAULT_REPORTS_PORT,
                   help="port serving the lake's HTML reports (default %(default)s)")
    p.add_argument("dagster_args", nargs=argparse.REMAINDER, help="passed on to `dagster dev`")
    p.set_defaults(fn=cmd_dev)
    p = sub.add_parser("serve-reports", help="serve the lake's reports/ (HTML reports) over http")
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_REPORTS_PORT)
    p.set_defaults(fn=cmd_serve_reports)
    p = sub.add_parser("check", help="evaluate every asset check against the current data, without "
                                     "re-materializing; exit 1 if a blocking check fails")
    p.add_argument("--junit", metavar="PATH", help="also write a JUnit XML report there")
    p.set_defaults(fn=cmd_check)
    args = parser.parse_args(argv)
    try:
        if args.command in ("demo", "replay"):
            console.quiet_libraries(log_path(current_settings(), args.command))
        return args.fn(args)
    except (SettingsError, ContractError) as e:
        # A configuration mistake is the operator's to fix: one line, not a traceback.
        print(f"ml-assets {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
