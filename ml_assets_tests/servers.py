"""Real servers on 127.0.0.1 for the staging profile: PostgreSQL, Redis, an S3-compatible server (moto)
and an MLflow tracking server. Each binds a free port the OS hands out, and is stopped (and its files
removed) when its context ends. Plain context managers, so any test or script can stack them;
`staging_stack` starts all four and yields the environment a staging process needs.

Requirements (scripts/test.sh installs them): Debian's `postgresql` and `redis-server`, and
`moto[server]` and `mlflow` in the venv.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, what: str, timeout_s: float = 60,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            state = (f"exited with code {proc.returncode}" if proc.poll() is not None
                     else f"was not ready after {timeout_s:.0f} s")
            raise RuntimeError(f"{what} {state} before it was ready" + (f"; its log ends:\n{tail}" if tail else ""))
        time.sleep(0.2)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _tool(name: str, *candidates: str) -> str:
    for c in (*candidates, shutil.which(name)):
        if c and Path(c).is_file():
            return str(c)
    raise RuntimeError(f"{name} not found: run scripts/test.sh, which installs the servers the tests start")


# ---- PostgreSQL ------------------------------------------------------------------------------------

def _postgres_bin(name: str) -> str:
    # Debian installs the server binaries off PATH, under /usr/lib/postgresql/<major>/bin.
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    return _tool(name, *(str(v) for v in reversed(versions)))


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str

    def url(self, db: str, driver: str = "psycopg2") -> str:
        """A SQLAlchemy URL (psycopg2: the driver dagster-postgres already installs)."""
        return f"postgresql+{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{db}"

    def connect(self, db: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname=db)


@contextlib.contextmanager
def postgres(databases: tuple[str, ...] = ()) -> Iterator[Postgres]:
    """A throwaway cluster with password (scram) authentication over TCP on 127.0.0.1.

    initdb and postgres refuse to run as root; as root (CI) they run as Debian's `postgres` system
    user, in a directory it owns."""
    as_user: dict = {}
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    root = Path(tempfile.mkdtemp(prefix="ml_assets-pg-"))
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    pg = Postgres(HOST, free_port(), "ml_assets", secrets.token_hex(12))
    pwfile = root / "pw"
    pwfile.write_text(pg.password)
    if as_user:
        os.chown(pwfile, as_user["user"], as_user["group"])
    proc = None
    try:
        subprocess.run([_postgres_bin("initdb"), "-D", str(root / "data"), "-U", pg.user, f"--pwfile={pwfile}",
                        "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, **as_user)
        pwfile.unlink()
        # Durability off: a test cluster is thrown away; it makes Dagster's and MLflow's writes cheap.
        log = root / "postgres.log"
        proc = subprocess.Popen([_postgres_bin("postgres"), "-D", str(root / "data"), "-h", pg.host, "-p",
                                 str(pg.port), "-k", str(root), "-c", "fsync=off", "-c", "synchronous_commit=off",
                                 "-c", "full_page_writes=off"],
                                stdout=log.open("wb"), stderr=subprocess.STDOUT, **as_user)

        def ready() -> bool:
            try:
                pg.connect().close()
                return True
            except Exception:
                return False

        wait_until(ready, proc, f"postgres on {pg.host}:{pg.port}", 60, log)
        if databases:
            conn = pg.connect()
            conn.autocommit = True
            with conn.cursor() as cur:
                for db in databases:
                    cur.execute(f'CREATE DATABASE "{db}"')
            conn.close()
        yield pg
    finally:
        if proc is not None:
            stop(proc, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
        shutil.rmtree(root, ignore_errors=True)


# ---- Redis ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def redis() -> Iterator[str]:
    """redis-server without persistence, with a password; yields its redis:// URL."""
    password = secrets.token_hex(12)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="ml_assets-redis-"))
    proc = subprocess.Popen([_tool("redis-server", "/usr/bin/redis-server"), "--bind", HOST, "--port", str(port),
                             "--save", "", "--appendonly", "no", "--requirepass", password, "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{password}@{HOST}:{port}/0"
    try:
        import redis as redis_client

        def ready() -> bool:
            try:
                return bool(redis_client.Redis.from_url(url).ping())
            except Exception:
                return False

        wait_until(ready, proc, f"redis-server on {HOST}:{port}", 30)
        yield url
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


# ---- S3 (moto) -------------------------------------------------------------------------------------------

@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3-compatible server; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen([_tool("moto_server", str(VENV_BIN / "moto_server")), "-H", HOST, "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{HOST}:{port}"
    try:
        wait_until(lambda: http_ok(url + "/moto-api/"), proc, f"moto_server on {url}", 30)
        yield url
    finally:
        stop(proc)


# ---- MLflow tracking server ----------------------------------------------------------------------------

@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, artifacts_destination: str, env: dict[str, str]) -> Iterator[str]:
    """`mlflow server` from the venv, proxying artifacts to `artifacts_destination` (clients never
    see the artifact store's credentials); yields its URL."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="ml_assets-mlflow-", suffix=".log")[1])
    proc = subprocess.Popen([_tool("mlflow", str(VENV_BIN / "mlflow")), "server", "--host", HOST, "--port",
                             str(port), "--backend-store-uri", backend_store_uri, "--artifacts-destination",
                             artifacts_destination, "--workers", "1"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            # Its background job runner (GenAI jobs) is not used here: 7 idle processes less.
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env},
                            start_new_session=True)
    url = f"http://{HOST}:{port}"
    try:
        wait_until(lambda: http_ok(url + "/health"), proc, f"mlflow server on {url}", 90, log)
        yield url
    finally:
        log.unlink(missing_ok=True)
        # The server runs its workers as children: stop the whole process group.
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---- the staging stack ----------------------------------------------------------------------------------

LANDING_BUCKET, LAKE_BUCKET, MLFLOW_BUCKET = "ml-assets-landing", "ml-assets-lake", "ml-assets-mlflow"


@contextlib.contextmanager
def staging_stack() -> Iterator[dict[str, str]]:
    """PostgreSQL (Dagster's storage and MLflow's backend store), Redis, S3 (landing, lake, MLflow
    artifacts) and an MLflow tracking server; yields the environment of a staging process (S1: every
    address and secret is an environment variable)."""
    import boto3

    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(postgres(databases=("dagster", "mlflow")))
        redis_url = stack.enter_context(redis())
        s3_url = stack.enter_context(moto_s3())
        aws = {"AWS_ACCESS_KEY_ID": "staging-key", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(12),
               "AWS_DEFAULT_REGION": "us-east-1"}
        s3 = boto3.client("s3", endpoint_url=s3_url, aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"], region_name=aws["AWS_DEFAULT_REGION"])
        for bucket in (LANDING_BUCKET, LAKE_BUCKET, MLFLOW_BUCKET):
            s3.create_bucket(Bucket=bucket)
        mlflow_url = stack.enter_context(mlflow_server(
            pg.url("mlflow"), f"s3://{MLFLOW_BUCKET}/artifacts", {**aws, "MLFLOW_S3_ENDPOINT_URL": s3_url}))
        yield {
            **aws,
            "ML_ASSETS_ENV": "staging",
            "ML_ASSETS_S3_ENDPOINT_URL": s3_url,
            "ML_ASSETS_LANDING_BUCKET": LANDING_BUCKET, "ML_ASSETS_LANDING_PREFIX": "cards/incoming",
            "ML_ASSETS_LAKE_BUCKET": LAKE_BUCKET, "ML_ASSETS_LAKE_PREFIX": "ml",
            "ML_ASSETS_REDIS_URL": redis_url,
            "MLFLOW_TRACKING_URI": mlflow_url,
            "DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_DB": "dagster",
            "DAGSTER_PG_USER": pg.user, "DAGSTER_PG_PASSWORD": pg.password,
        }
