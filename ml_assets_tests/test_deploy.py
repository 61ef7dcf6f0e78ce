"""O5, S1, S4: the production files are valid for the systems that read them (offline: no cluster here)."""

from pathlib import Path

import pytest
import yaml
from dagster._config import process_config, validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_postgres import DagsterPostgresStorage

from ml_assets.training import k8s

ROOT = Path(__file__).resolve().parent.parent


def test_training_rbac_in_helm_is_the_rendered_one_and_valid():
    documents = [d for d in yaml.safe_load_all((ROOT / "helm" / "training-rbac.yaml").read_text()) if d]
    assert documents == k8s.render_rbac("ml-assets", "ml-assets-trainer"), "regenerate helm/training-rbac.yaml"
    assert k8s.validate_manifests(documents) == ["ServiceAccount/ml-assets-trainer", "Role/ml-assets-trainer",
                                                 "RoleBinding/ml-assets-trainer"]


def test_production_instance_config_is_valid_and_reads_every_secret_from_the_environment(tmp_path, monkeypatch):
    text = (ROOT / "deploy" / "dagster.prod.yaml").read_text()
    (tmp_path / "dagster.yaml").write_text(text)
    for var, value in {"DAGSTER_PG_HOST": "postgres", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_DB": "dagster",
                       "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "from-a-secret",
                       "ML_ASSETS_K8S_NAMESPACE": "ml-assets", "DAGSTER_INSTANCE_CONFIG_MAP": "dagster-instance",
                       "DAGSTER_RUN_SERVICE_ACCOUNT": "dagster"}.items():
        monkeypatch.setenv(var, value)
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    # The pluggable classes' own schemas (the instance schema only checks module/class/config shells).
    storage = validate_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    checked = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert checked.success, checked.errors
    assert checked.value["job_namespace"] == "ml-assets"  # resolved from the environment
    limits = config["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {"key": "ml_assets/gpu", "value": "true", "limit": 1} in limits
    # S1: every Postgres connection field is read from the environment, none is written in the file.
    assert all(set(v) == {"env"} for v in config["storage"]["postgres"]["postgres_db"].values())

    broken = yaml.safe_load(text)
    broken["run_launcher"]["config"]["job_namespace"] = {"env": "ML_ASSETS_NO_SUCH_VARIABLE"}
    assert not process_config(K8sRunLauncher.config_type(), broken["run_launcher"]["config"]).success


def test_image_runs_as_the_non_root_user_the_pods_expect():
    lines = [line.strip() for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines()]
    users = [line.split(None, 1)[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] == "1000:1000", users
    pod_user = k8s.GpuTrainingConfig(image="x").run_as_user
    assert users[-1].split(":")[0] == str(pod_user)
    values = yaml.safe_load((ROOT / "helm" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["podSecurityContext"]["runAsUser"] == pod_user
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "ml_assets.definitions"]
    assert {"name": "ML_ASSETS_ENV", "value": "prod"} in deployment["env"]
    with pytest.raises(ValueError, match="non-root"):
        k8s.GpuTrainingConfig(image="x", run_as_user=0)
