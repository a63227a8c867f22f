"""The environment of a local Airflow: the demo, `make airflow` and the DAG tests share it.

Everything is configured through ``AIRFLOW__*`` and ``AIRFLOW_CONN_*`` variables (no airflow.cfg
editing): the metadata database and the market database live in the private PostgreSQL cluster,
the DAGs and plugins come straight from this checkout, and the scheduler carries the settings
that keep a minute run inside its minute (see AIRFLOW_3.md: idle sleep 0.1 s, 64 task instances
per query, parallelism at least twice the ``kis_api`` pool).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import psycopg
from cryptography.fernet import Fernet

from devtools import localpg

REPO = localpg.REPO
VENV_BIN = REPO / ".venv" / "bin"
SIMULATOR_APPKEY = "SIMULATOR-APPKEY"
SIMULATOR_APPSECRET = "SIMULATOR-APPSECRET"
# The Celery configuration of our workers (celery_config/kis_celery.py): on PYTHONPATH here, mounted
# at $AIRFLOW_HOME/config (on Airflow's sys.path) in compose.
CELERY_CONFIG_DIR = REPO / "celery_config"
CELERY_CONFIG_OPTIONS = "kis_celery.CELERY_CONFIG"


def kept_secret(name: str, make) -> str:
    """A secret generated once per checkout and kept (0600) beside the cluster's data."""
    path = localpg.state_dir() / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def admin_password() -> str:
    """The local UI's ``admin`` password, generated once per checkout."""
    return kept_secret("admin.password", lambda: secrets.token_urlsafe(12))


def kis_connection(host: str, port: int, *, environment: str = "real", appkey: str = SIMULATOR_APPKEY,
                   appsecret: str = SIMULATOR_APPSECRET, scheme: str = "http", **extra: object) -> str:
    """``AIRFLOW_CONN_KIS_DEFAULT`` for a KIS-compatible endpoint (the simulator by default): a
    connection of type ``kis``, as the UI's form makes it (the scheme in the host).

    :param extra: more of the hook's connection extras (``rate_limit``, ``token_issue_interval`` ...).
    """
    return json.dumps(
        {
            "conn_type": "kis",
            "host": f"{scheme}://{host}",
            "port": port,
            "login": appkey,
            "password": appsecret,
            "extra": {"environment": environment, "custtype": "P", **extra},
        }
    )


def master_connection(host: str, port: int, *, scheme: str = "http") -> str:
    """``AIRFLOW_CONN_KIS_MASTER`` for a server of KIS's stock master files (the simulator by
    default): an ``http`` connection with the scheme in the host."""
    return json.dumps({"conn_type": "http", "host": f"{scheme}://{host}", "port": port})


def environment(name: str, *, api_port: int = 8080, market_db: str | None = None,
                kis_conn: str | None = None, master_conn: str | None = None) -> dict[str, str]:
    """The variables of local Airflow ``name``: its own home and metadata database.

    :param name: ``local`` for the demo and `make airflow`; tests use their own names.
    :param market_db: the market database's name (default ``kis_market_<name>``).
    :param kis_conn: ``AIRFLOW_CONN_KIS_DEFAULT``; left out when None.
    :param master_conn: ``AIRFLOW_CONN_KIS_MASTER``; left out when None (KIS's download server).
    """
    cluster = localpg.cluster()
    home = localpg.state_dir() / f"airflow-{name}"
    metadata_dsn = cluster.dsn(f"airflow_{name}").replace("postgresql://", "postgresql+psycopg://", 1)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_dsn,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # The connection form's Test button and `airflow connections test` (KisHook.test_connection).
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # Twice the kis_api pool (8). The LocalExecutor of 3.3 starts `parallelism` worker processes
        # up front; bench/bench_minute_run.py measured 16 against 32: minute runs no slower (p50
        # 17.1 vs 22.4 s per code, 5.8 vs 6.3 s batched, on a shared 2-core machine) and 0.36-0.45
        # GB less memory (PSS peak 1.82 vs 2.18 GB, 1.40 vs 1.85 GB after the runs). The caller's
        # value wins: twice a pool grown for more app keys (docs/operations.md, "App keys").
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "16"),
        "AIRFLOW__CORE__FERNET_KEY": kept_secret("fernet.key", lambda: Fernet.generate_key().decode()),
        "AIRFLOW__API_AUTH__JWT_SECRET": kept_secret("jwt-secret", lambda: secrets.token_urlsafe(64)),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.1",
        "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "64",
        # A task's supervisor (its LocalExecutor worker) often notices the task process's exit only
        # at its next heartbeat check, up to this many seconds after the task ended, and holds an
        # executor slot meanwhile: with the default 5 s, 28 % of the minute run's fetch tasks did,
        # and the run stalled when they filled `parallelism` (bench/README.md).
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW_CONN_KIS_MARKET_DB": cluster.dsn(market_db or f"kis_market_{name}"),
        # The metadata database again, as a connection: kis_maintenance's `airflow db clean` needs
        # it, because the Task SDK blanks AIRFLOW__DATABASE__SQL_ALCHEMY_CONN in task processes.
        "AIRFLOW_CONN_AIRFLOW_DB": cluster.dsn(f"airflow_{name}"),
    }
    if kis_conn:
        env["AIRFLOW_CONN_KIS_DEFAULT"] = kis_conn
    if master_conn:
        env["AIRFLOW_CONN_KIS_MASTER"] = master_conn
    if address := os.environ.get("KIS_STATSD"):
        env |= statsd(address)
    return env


def statsd(address: str) -> dict[str, str]:
    """The variables that send Airflow's metrics, the collection's ``kis.*`` among them, to the
    StatsD server at ``host:port`` (``KIS_STATSD`` for `make airflow` and the demo)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"KIS_STATSD must be host:port, got {address!r}")
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": host,
        "AIRFLOW__METRICS__STATSD_PORT": port,
    }


def celery(env: dict[str, str], broker_url: str, *, concurrency: int = 8) -> dict[str, str]:
    """The variables that turn local Airflow ``env`` into a CeleryExecutor with broker ``broker_url``.

    The result backend is the metadata database, the Celery config is celery_config/kis_celery.py
    (on ``PYTHONPATH`` for every component: the scheduler builds the same Celery app to publish).
    ``concurrency`` task processes per worker: two workers of 8 fill ``parallelism`` 16.
    """
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": CELERY_CONFIG_OPTIONS,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(CELERY_CONFIG_DIR), os.environ.get("PYTHONPATH")])),
    }


def celery_worker(index: int, log_server_port: int) -> dict[str, str]:
    """What sets worker ``index`` apart from the others on this machine: the hostname it records on
    its task instances (``kis_celery.hostname``) and its log server's port (two would clash on 8793)."""
    return {
        "KIS_WORKER_HOSTNAME": f"kis-worker-{index}",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "kis_celery.hostname",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_server_port),
    }


def prepare(env: dict[str, str]) -> None:
    """Creates the databases, migrates the metadata database and imports the pools that do not
    exist yet (idempotent)."""
    localpg.start()
    localpg.wait_until_accepting()
    for dsn_var in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW_CONN_KIS_MARKET_DB"):
        localpg.create_database(env[dsn_var].rsplit("/", 1)[1])
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    passwords.write_text(json.dumps({"admin": admin_password()}))
    passwords.chmod(0o600)
    _airflow(env, "db", "migrate")
    import_missing_pools(env)


def import_missing_pools(env: dict[str, str]) -> None:
    """Imports include/pools.json when one of its pools is missing: a pool an operator resized, e.g.
    for a second app key, keeps its size across restarts."""
    pools = REPO / "include" / "pools.json"
    metadata_dsn = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg://", "postgresql://", 1)
    # Airflow's own table: the CLI would take a start of its own per pool to say whether one exists.
    with psycopg.connect(metadata_dsn) as conn:
        existing = {name for (name,) in conn.execute("SELECT pool FROM slot_pool")}
    if set(json.loads(pools.read_text())) - existing:
        _airflow(env, "pools", "import", str(pools))


def _airflow(env: dict[str, str], *argv: str) -> None:
    subprocess.run([str(VENV_BIN / "airflow"), *argv], env={**os.environ, **env}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
