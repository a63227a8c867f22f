"""Where the package's files and Airflow connections are: the one place that names them.

``include/`` holds what a user edits or a DBA reads (the watch-list, the special sessions, every
SQL statement); the DAGs put it on ``template_searchpath`` so ``SQLExecuteQueryOperator`` runs the
same files that Python callers load with :func:`load_sql`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

INCLUDE_DIR = Path(__file__).resolve().parents[2] / "include"
SQL_DIR = INCLUDE_DIR / "sql"

#: The KIS Open API connection (``AIRFLOW_CONN_KIS_DEFAULT``).
KIS_CONN_ID = "kis_default"
#: KIS's download server of the stock master files (``AIRFLOW_CONN_KIS_MASTER``; unset: KIS's own).
KIS_MASTER_CONN_ID = "kis_master"
#: The market database: bars, verification, alerts, and the hook's shared token and limiter state.
MARKET_DB_CONN_ID = "kis_market_db"


@cache
def load_sql(name: str) -> str:
    """The text of ``include/sql/<name>`` (``.sql`` may be left out), read once per process."""
    return (SQL_DIR / (name if name.endswith(".sql") else f"{name}.sql")).read_text()
