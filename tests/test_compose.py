"""The compose files are valid, with the settings .env.example documents: docker-compose.yaml (the
main machine), docker-compose.publish.yaml (its services for other machines) and
docker-compose.worker.yaml (a Celery worker on a machine of its own).

No Docker engine runs on our machines, but ``config`` needs none: it parses, validates and
interpolates the file. The test uses ``docker compose`` (v2) when the Docker CLI has the plugin,
else ``docker-compose``: Debian's (1.29, which is why the file keeps to the compose features 1.29
knows: profiles, depends_on conditions, extension fields), which scripts/test.sh installs as root.
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
PUBLISH_FILE = REPO / "docker-compose.publish.yaml"
WORKER_FILE = REPO / "docker-compose.worker.yaml"
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
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip(
        "neither `docker compose` nor `docker-compose` is available"
        " (scripts/test.sh installs Debian's docker-compose when run as root)"
    )


@pytest.fixture(scope="module")
def compose() -> list[str]:
    return _compose_command()


def _config(compose: list[str], *args: str, env_file: Path = ENV_EXAMPLE,
            files: tuple[Path, ...] = (COMPOSE_FILE,)) -> subprocess.CompletedProcess:
    """``config`` of the compose ``files`` with ``env_file`` (not an operator's own .env)."""
    argv = [*compose, "--env-file", str(env_file), *(a for f in files for a in ("-f", str(f))),
            "--project-directory", str(REPO)]
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
    assert (kis["conn_type"], kis["host"], kis["port"], kis["login"]) == (
        "kis", "http://simulator", 8765, "SIMULATOR-APPKEY"
    )
    # The stock masters of kis_universe come from the simulator too (KIS's server once KIS_MASTER_URL is set).
    assert json.loads(env["AIRFLOW_CONN_KIS_MASTER"]) == {"conn_type": "http", "host": "http://simulator:8765"}
    # The connection form's Test button runs in the API server (KisHook.test_connection).
    assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"
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
        + "KIS_APPKEY=PSabc\nKIS_APPSECRET=c2VjcmV0+/=\nKIS_MASTER_URL=https://new.real.download.dws.co.kr\n"
    )
    env = _parsed(_config(compose, env_file=env_file))["services"]["airflow-scheduler"]["environment"]
    kis = json.loads(env["AIRFLOW_CONN_KIS_DEFAULT"])
    assert kis == {
        "conn_type": "kis",
        "host": "https://openapivts.koreainvestment.com",
        "port": 29443,
        "login": "PSabc",
        "password": "c2VjcmV0+/=",
        "extra": {"environment": "mock", "custtype": "P"},
    }
    master = json.loads(env["AIRFLOW_CONN_KIS_MASTER"])
    assert master == {"conn_type": "http", "host": "https://new.real.download.dws.co.kr"}


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
    worker = services["airflow-worker"]
    assert worker["command"] in (["celery", "worker"], "celery worker")
    # The worker imports what a task needs before its pool forks (celery_config/kis_celery.py).
    assert worker["environment"]["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == "kis_celery.CELERY_CONFIG"
    assert any(str(v).startswith(f"{REPO}/celery_config:/opt/airflow/config") or _is_mount(v, "/opt/airflow/config")
               for v in worker["volumes"])
    assert "--requirepass" in services["redis"]["command"]
    assert worker["environment"]["AIRFLOW__CELERY__BROKER_URL"] == "redis://:change-me-redis@redis:6379/0"


# A main machine at 10.0.0.10 and a worker machine at 10.0.0.11 (docs/operations.md).
ELSEWHERE = {
    "AIRFLOW_EXECUTOR": "CeleryExecutor",
    "AIRFLOW_DB_HOST": "10.0.0.10",
    "MARKET_DB_HOST": "10.0.0.10",
    "REDIS_HOST": "10.0.0.10",
    "AIRFLOW_API_HOST": "10.0.0.10",
    "AIRFLOW_API_PORT": "8080",
    "PUBLISH_ADDRESS": "10.0.0.10",
    "WORKER_HOSTNAME": "worker-1.internal",
    "WORKER_LOG_ADDRESS": "10.0.0.11",
}


def _env_file(tmp_path: Path, settings: dict[str, str]) -> Path:
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text() + "".join(f"{k}={v}\n" for k, v in settings.items()))
    return env_file


def _ports(service: dict) -> list[tuple[str, str, str]]:
    """(host address, published port, container port) of each published port."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((str(port.get("host_ip")), str(port["published"]), str(port["target"])))
        else:
            address, published, target = port.split("/")[0].split(":")
            out.append((address, published, target))
    return out


def test_the_hosts_of_the_services_come_from_the_environment(compose, tmp_path):
    env = _parsed(_config(compose, env_file=_env_file(tmp_path, ELSEWHERE)))["services"]["airflow-scheduler"][
        "environment"
    ]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@10.0.0.10:5432/airflow")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].endswith("@10.0.0.10:5432/airflow")
    assert env["AIRFLOW_CONN_KIS_MARKET_DB"].endswith("@10.0.0.10:5432/kis_market")
    assert env["AIRFLOW__CELERY__BROKER_URL"].endswith("@10.0.0.10:6379/0")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://10.0.0.10:8080/execution/"


def test_the_publish_file_opens_postgres_redis_and_the_api_server_on_the_private_address(compose, tmp_path):
    services = _parsed(_config(compose, "--profile", "celery", env_file=_env_file(tmp_path, ELSEWHERE),
                               files=(COMPOSE_FILE, PUBLISH_FILE)))["services"]
    assert ("10.0.0.10", "5432", "5432") in _ports(services["postgres"])
    assert ("10.0.0.10", "6379", "6379") in _ports(services["redis"])
    assert set(_ports(services["airflow-api-server"])) == {("127.0.0.1", "8080", "8080"), ("10.0.0.10", "8080", "8080")}
    # Without the publish file, nothing but the UI on loopback.
    services = _parsed(_config(compose, "--profile", "celery"))["services"]
    assert [p for s in services.values() for p in _ports(s)] == [("127.0.0.1", "8080", "8080")]


def test_the_worker_file_starts_a_worker_alone_with_the_main_files_settings(compose, tmp_path):
    env_file = _env_file(tmp_path, ELSEWHERE)
    services = _parsed(_config(compose, env_file=env_file, files=(WORKER_FILE,)))["services"]
    assert set(services) == {"airflow-worker"}
    worker = services["airflow-worker"]
    assert not worker.get("depends_on")
    assert worker["hostname"] == "worker-1.internal"
    assert "worker-1.internal" in worker["command"]
    assert _ports(worker) == [("10.0.0.11", "8793", "8793")]
    # The same Airflow settings as the main file's worker: one .env, every machine alike.
    main_worker = _parsed(_config(compose, "--profile", "celery", env_file=env_file))["services"]["airflow-worker"]
    assert worker["environment"] == main_worker["environment"]
    assert {_target(v) for v in worker["volumes"]} == {_target(v) for v in main_worker["volumes"]} - {
        "/opt/airflow/auth"
    }


def test_the_worker_file_names_what_it_misses(compose, tmp_path):
    result = _config(compose, env_file=ENV_EXAMPLE, files=(WORKER_FILE,))
    assert result.returncode != 0
    assert "WORKER_HOSTNAME" in result.stderr or "WORKER_LOG_ADDRESS" in result.stderr


def _target(volume: dict | str) -> str:
    return volume["target"] if isinstance(volume, dict) else volume.split(":")[1]


def test_metrics_are_off_until_the_env_turns_statsd_on(compose, tmp_path):
    services = _parsed(_config(compose))["services"]
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__METRICS__STATSD_ON"] == "false"
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text() + "AIRFLOW_STATSD_ON=true\nAIRFLOW_STATSD_HOST=10.0.0.20\n")
    for name, service in _parsed(_config(compose, env_file=env_file))["services"].items():
        if name in AIRFLOW_SERVICES:
            env = service["environment"]
            assert (env["AIRFLOW__METRICS__STATSD_ON"], env["AIRFLOW__METRICS__STATSD_HOST"]) == ("true", "10.0.0.20")
            assert env["AIRFLOW__METRICS__STATSD_PORT"] == "8125"
