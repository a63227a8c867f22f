"""docker-compose.yaml is a valid compose file, with the settings .env.example documents.

No Docker engine runs on our machines, but ``config`` needs none: it parses, validates and
interpolates the file. The test uses ``docker compose`` (v2) when the Docker CLI has the plugin,
else ``docker-compose``, installing Debian's (1.29, which is why the file keeps to the compose
features 1.29 knows: profiles, depends_on conditions, extension fields) when running as root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}


def _compose_command() -> list[str]:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if not shutil.which("docker-compose") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "docker-compose"]):
            subprocess.run(argv, env=env, capture_output=True, timeout=600)
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip(
        "neither `docker compose` nor `docker-compose` is available, and installing Debian's needs root"
    )


@pytest.fixture(scope="module")
def compose() -> list[str]:
    return _compose_command()


def _config(compose: list[str], *args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess:
    """``config`` of the compose file with ``env_file`` (not an operator's own .env)."""
    argv = [*compose, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "--project-directory", str(REPO)]
    # A clean environment: a developer's own KIS_* or AIRFLOW_* variables must not leak in.
    env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    return subprocess.run(
        [*argv, *args, "config"], capture_output=True, text=True, timeout=60, env=env, cwd=REPO
    )


def _parsed(result: subprocess.CompletedProcess) -> dict:
    import yaml

    assert result.returncode == 0, result.stderr
    return (
        json.loads(result.stdout) if result.stdout.lstrip().startswith("{") else yaml.safe_load(result.stdout)
    )


def test_config_succeeds_with_the_documented_settings(compose):
    config = _parsed(_config(compose))
    services = config["services"]
    assert AIRFLOW_SERVICES | {"postgres", "simulator"} <= set(services)
    api = services["airflow-api-server"]
    # Bound to loopback only.
    assert [str(p.get("host_ip")) if isinstance(p, dict) else p.split(":")[0] for p in api["ports"]] == [
        "127.0.0.1"
    ]
    env = api["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == "0.1"
    kis = json.loads(env["AIRFLOW_CONN_KIS_DEFAULT"])
    assert (kis["host"], kis["port"], kis["login"]) == ("simulator", 8765, "SIMULATOR-APPKEY")
    assert env["AIRFLOW_CONN_KIS_MARKET_DB"].endswith("@postgres:5432/kis_market")
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert any(
            str(v).endswith(":/opt/airflow/plugins:ro") or _is_mount(v, "/opt/airflow/plugins")
            for v in services[name]["volumes"]
        )


def _is_mount(volume: dict | str, target: str) -> bool:
    return isinstance(volume, dict) and volume.get("target") == target


def test_real_credentials_come_from_the_environment(compose, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        ENV_EXAMPLE.read_text()
        + "KIS_HOST=openapivts.koreainvestment.com\nKIS_PORT=29443\nKIS_SCHEME=https\nKIS_ENVIRONMENT=mock\n"
        + "KIS_APPKEY=PSabc\nKIS_APPSECRET=c2VjcmV0+/=\n"
    )
    env = _parsed(_config(compose, env_file=env_file))["services"]["airflow-scheduler"]["environment"]
    kis = json.loads(env["AIRFLOW_CONN_KIS_DEFAULT"])
    assert kis == {
        "conn_type": "http",
        "host": "openapivts.koreainvestment.com",
        "port": 29443,
        "schema": "https",
        "login": "PSabc",
        "password": "c2VjcmV0+/=",
        "extra": {"environment": "mock", "custtype": "P"},
    }


def test_missing_secret_is_named(compose, tmp_path):
    # An empty env file, so that an operator's own .env beside the compose file is not read.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _config(compose, env_file=empty)
    assert result.returncode != 0
    assert "in .env" in result.stderr


def test_celery_profile_adds_redis_and_a_worker(compose):
    services = _parsed(_config(compose, "--profile", "celery"))["services"]
    assert {"redis", "airflow-worker"} <= set(services)
    assert services["airflow-worker"]["command"] in (["celery", "worker"], "celery worker")
