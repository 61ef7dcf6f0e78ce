"""The console and UI as a person meets them: one-line configuration errors, links that open,
`ml-assets dev` that works from anywhere, defaults that match the README."""

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import cli, links
from ml_assets.features.store import redis_connection_string
from ml_assets.serve import serve_in_thread
from ml_assets.settings import Settings
from ml_assets.storage import LocalStore

ROOT = Path(__file__).resolve().parent.parent


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """The console script as a person runs it: a new process, from another directory."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ML_ASSETS_", "MLFLOW_"))}
    return subprocess.run([sys.executable, "-m", "ml_assets.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**clean, "PYTHONPATH": str(ROOT), **env}, timeout=120)


@pytest.mark.parametrize("env, expected", [
    ({"ML_ASSETS_ENV": "production"}, "ML_ASSETS_ENV='production': expected one of local, staging, prod"),
    ({"ML_ASSETS_CONTRACT": "no/such/contract.yaml"}, "expected a contract YAML file, found nothing at"),
    ({"ML_ASSETS_CONTRACT": "."}, "expected a contract YAML file, found a directory at"),
])
def test_configuration_mistakes_are_one_line_with_exit_code_2(tmp_path, env, expected):
    done = run_cli(["simulate", "--days", "1"], {"ML_ASSETS_HOME": str(tmp_path / "home"), **env}, tmp_path)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_an_invalid_contract_is_one_line_naming_the_file_and_field(tmp_path):
    bad = tmp_path / "contract.yaml"
    bad.write_text("name: x\nrecords: {}\n")
    done = run_cli(["lineage", "--alias", "champion"], {"ML_ASSETS_HOME": str(tmp_path), "ML_ASSETS_CONTRACT": str(bad)},
                   tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(bad) in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_lineage_on_an_empty_home_creates_nothing(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("ML_ASSETS_HOME", str(home))
    monkeypatch.delenv("ML_ASSETS_ENV", raising=False)
    monkeypatch.delenv("ML_ASSETS_CONTRACT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert cli.main(["lineage", "--alias", "champion"]) == 1
    assert "no MLflow registry" in capsys.readouterr().err
    assert not home.exists(), "looking created files"


def test_a_replay_never_empties_the_files_it_was_asked_to_replay(tmp_path, monkeypatch, capsys):
    # A replay starts from an empty home; files to replay that lie inside it (a user pointing --source at the
    # landing zone they already have) are refused before anything is removed, not deleted with it.
    home = tmp_path / "home"
    delivered = home / "landing" / "transactions" / "2026-01-01.csv"
    delivered.parent.mkdir(parents=True)
    delivered.write_text("transaction_id\n1\n")
    (home / "lake").mkdir()
    monkeypatch.setenv("ML_ASSETS_HOME", str(home))
    monkeypatch.delenv("ML_ASSETS_ENV", raising=False)
    monkeypatch.delenv("ML_ASSETS_CONTRACT", raising=False)
    assert cli.main(["replay", "--source", str(home / "landing")]) == 1
    err = capsys.readouterr().err
    assert "lies inside" in err and str(home / "landing") in err
    assert delivered.read_text() == "transaction_id\n1\n" and (home / "lake").is_dir(), "removed before refusing"


def test_links_point_at_what_a_browser_can_open(monkeypatch):
    monkeypatch.delenv("ML_ASSETS_MLFLOW_UI_URL", raising=False)
    monkeypatch.delenv("ML_ASSETS_REPORTS_URL", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///somewhere/mlflow.db")
    # Local defaults: what `ml-assets dev` serves.
    assert links.mlflow_run_url("abc", "3") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    assert links.mlflow_model_version_url("m x", 2) == "http://127.0.0.1:5000/#/models/m%20x/versions/2"
    assert links.report_url("reports/drift_report/2026-01-05.html") == \
        "http://127.0.0.1:3001/reports/drift_report/2026-01-05.html"
    # A tracking server serves its own UI; an explicit setting wins over both.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com/")
    assert links.mlflow_run_url("abc", "3").startswith("https://mlflow.example.com/#/")
    monkeypatch.setenv("ML_ASSETS_MLFLOW_UI_URL", "https://ui.example.com")
    monkeypatch.setenv("ML_ASSETS_REPORTS_URL", "https://reports.example.com/lake/")
    assert links.mlflow_run_url("abc", "3").startswith("https://ui.example.com/#/")
    assert links.report_url("reports/x.html") == "https://reports.example.com/lake/reports/x.html"
    with pytest.raises(ValueError, match="under 'reports/'"):
        links.report_url("raw_transactions/2026-01-01.parquet")


def test_the_report_server_serves_reports_and_nothing_else_of_the_lake(tmp_path):
    lake = LocalStore(tmp_path / "lake")
    lake.write_bytes("reports/drift_report/2026-01-05.html", b"<html>drift</html>")
    lake.write_bytes("raw_transactions/2026-01-05.parquet", b"data")
    base, stop = serve_in_thread(lake)
    try:
        with urllib.request.urlopen(f"{base}/reports/drift_report/2026-01-05.html", timeout=5) as r:
            assert r.status == 200 and r.read() == b"<html>drift</html>"
            assert r.headers["Content-Type"] == "text/html"
        for path in ("/raw_transactions/2026-01-05.parquet", "/reports/../raw_transactions/2026-01-05.parquet",
                     "/reports/drift_report/missing.html"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path, timeout=5)
            assert e.value.code == 404
    finally:
        stop()


def test_dev_runs_the_venvs_own_executables_on_the_packaged_code_location():
    from ml_assets.dev import dagster_dev_command, mlflow_ui_command

    cmd = dagster_dev_command("127.0.0.1", 3123, ["--log-level", "warning"])
    assert cmd[0] == str(Path(sys.executable).parent / "dagster") and Path(cmd[0]).exists()
    assert cmd[1:4] == ["dev", "-m", "ml_assets.definitions"]
    assert cmd[cmd.index("-d") + 1] == str(ROOT)  # where the imported package lives, not the cwd
    assert cmd[cmd.index("-h") + 1] == "127.0.0.1" and cmd[cmd.index("-p") + 1] == "3123"
    assert cmd[-2:] == ["--log-level", "warning"]
    ui = mlflow_ui_command(Settings(env="local", home=Path("h"), contract_path=None), "127.0.0.1", 5123)
    assert ui[0] == str(Path(sys.executable).parent / "mlflow") and Path(ui[0]).exists()
    assert ui[ui.index("--port") + 1] == "5123"


def test_redis_urls_become_feasts_connection_string():
    assert redis_connection_string("redis://:s3cret@cache:6380/2") == "cache:6380,db=2,password=s3cret"
    assert redis_connection_string("rediss://user:pw@cache") == "cache:6379,ssl=true,username=user,password=pw"
    assert redis_connection_string("cache:6379,password=x") == "cache:6379,password=x"
    with pytest.raises(ValueError, match="expected redis://"):
        redis_connection_string("http://cache:6379")


def test_daily_ingest_schedule_runs_by_default_as_the_readme_says(settings_factory):
    from ml_assets.definitions import build_definitions

    defs = build_definitions(settings_factory())
    schedule = defs.resolve_schedule_def("daily_ingest_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "30 1 * * *"
    assert "01:30 UTC" in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_dev_starts_all_three_servers_from_anywhere_and_ctrl_c_stops_them_all(tmp_path):
    """Outside the repo, venv not activated (PATH without it): Dagster UI, MLflow UI and report server
    come up on the ports asked for, and one SIGINT stops every process."""
    import signal
    import time

    from ml_assets_tests import servers

    ports = [servers.free_port() for _ in range(3)]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ML_ASSETS_", "MLFLOW_", "DAGSTER_")) and k != "VIRTUAL_ENV"}
    env.update(PATH="/usr/bin:/bin", PYTHONPATH=str(ROOT), ML_ASSETS_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "ml_assets.cli", "dev", "--port", str(ports[0]), "--mlflow-port",
                             str(ports[1]), "--reports-port", str(ports[2])], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        urls = [f"http://127.0.0.1:{ports[0]}/server_info", f"http://127.0.0.1:{ports[1]}/health",
                f"http://127.0.0.1:{ports[2]}/healthz"]
        servers.wait_until(lambda: all(servers.http_ok(u) for u in urls), proc, "ml-assets dev", 180)
        # Each server runs in its own session (sid = its pid), with its own children (webserver, daemon, ...).
        sessions = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(sessions) == 2, sessions  # dagster dev, mlflow ui (the report server is a thread)
        assert (tmp_path / "home" / "dagster_home" / "dagster.yaml").resolve() == (ROOT / "dagster.yaml").resolve()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert f"Dagster UI   http://127.0.0.1:{ports[0]}" in out and f"MLflow UI    http://127.0.0.1:{ports[1]}" in out
    time.sleep(1)
    assert not any(servers.http_ok(u) for u in urls), "a server outlived Ctrl-C"
    left = [sid for sid in sessions if subprocess.run(["pgrep", "-s", sid], capture_output=True).returncode == 0]
    assert left == [], f"processes of sessions {left} outlived Ctrl-C"
