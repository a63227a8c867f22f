"""What `make airflow` (devtools.local_airflow) sets up each start, and what it leaves to the operator."""

from __future__ import annotations

import psycopg

from devtools import airflow_env


def _pool_slots(env: dict[str, str]) -> int | None:
    dsn = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT slots FROM slot_pool WHERE pool = 'kis_api'").fetchone()
    return row[0] if row else None


def _set_pool(env: dict[str, str], slots: int | None) -> None:
    dsn = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        if slots is None:
            conn.execute("DELETE FROM slot_pool WHERE pool = 'kis_api'")
        else:
            conn.execute("UPDATE slot_pool SET slots = %s WHERE pool = 'kis_api'", (slots,))


def test_a_pool_resized_for_a_second_key_keeps_its_size_across_restarts(airflow_db) -> None:
    """docs/operations.md, "App keys": `airflow pools set kis_api 16` lasts; a missing pool is made."""
    assert _pool_slots(airflow_db) == 8  # include/pools.json
    try:
        _set_pool(airflow_db, 16)
        airflow_env.import_missing_pools(airflow_db)  # as every start does (airflow_env.prepare)
        assert _pool_slots(airflow_db) == 16
        _set_pool(airflow_db, None)
        airflow_env.import_missing_pools(airflow_db)
        assert _pool_slots(airflow_db) == 8
    finally:
        _set_pool(airflow_db, 8)


def test_the_parallelism_follows_the_callers_environment(monkeypatch) -> None:
    """Twice a pool grown for more app keys: `AIRFLOW__CORE__PARALLELISM=32 make airflow`."""
    monkeypatch.delenv("AIRFLOW__CORE__PARALLELISM", raising=False)
    assert airflow_env.environment("local")["AIRFLOW__CORE__PARALLELISM"] == "16"
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "32")
    assert airflow_env.environment("local")["AIRFLOW__CORE__PARALLELISM"] == "32"
