"""What one task of the minute run costs, counted: a new per-task query, request or XCom fails here
by its count, not by a timing (issue 21; the benchmarks in bench/ measure the time it costs).

- the SQL statements a fetch task sends to the state database (the token, the rate limiter);
- the requests it sends to KIS per code;
- the Variables a task process asks the API server for when it parses its DAG file;
- the XComs a fetch task pushes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest

from kis import minute_run, schema
from kis.task_context import Run
from simulated_day import CODES, DAGS_FOLDER, kst
from simulator.testing import run_simulator

TICK = kst("2026-11-25T10:31")


@contextmanager
def statements_to(dbname: str) -> Iterator[list[str]]:
    """The statements any psycopg connection of this process sends to database ``dbname``."""
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counting(cursor, query, *args, **kwargs):
        if cursor.connection.info.dbname == dbname:
            sent.append(query.as_string(cursor) if hasattr(query, "as_string") else str(query))
        return execute(cursor, query, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(psycopg.Cursor, "execute", counting)
        yield sent


@pytest.fixture
def warm_state(point_kis_at: Callable[..., None], market_dsn: str) -> Iterator:
    """A simulator at 10:31:03 and a market database as the run's gate leaves it: migrated, and the
    day's token stored by an earlier task."""
    with run_simulator(now="2026-11-25T10:31:03+09:00") as sim:
        point_kis_at(sim)
        with psycopg.connect(market_dsn, autocommit=True) as conn:
            schema.migrate(conn)
        minute_run.fetch_recent_bars(["005930"], Run("kis_minute_bars", "warm-up", TICK))
        sim.reset_counters()
        yield sim, psycopg.conninfo.conninfo_to_dict(market_dsn)["dbname"]


@pytest.mark.parametrize("codes", [CODES[:1], CODES])
def test_a_fetch_task_sends_one_token_read_and_one_rate_slot_per_code(warm_state, codes: list[str]) -> None:
    sim, dbname = warm_state
    with statements_to(dbname) as sent:
        value = minute_run.fetch_recent_bars(codes, Run("kis_minute_bars", "counted", TICK))
    assert value["fetched"] == codes and value["failed"] == {}
    kinds = Counter("kis_api_token" if "kis_api_token" in sql else "kis_api_rate" if "kis_api_rate" in sql else sql
                    for sql in sent)
    assert kinds == {"kis_api_token": 1, "kis_api_rate": len(codes)}, sent
    # One request per code, and no token issued: the stored one serves every task of the day.
    assert sim.counters()["requests_by_endpoint"] == {"inquire-time-itemchartprice": len(codes)}


def test_a_task_parsing_its_dag_file_asks_the_api_server_for_no_variable(airflow_db, monkeypatch) -> None:
    """The DAG file reads ``kis_venues`` for the minute DAG's schedule; a task process, which parses
    the file again to run one task, needs no schedule and must not pay that request."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import Variable

    asked: list[str] = []
    get = Variable.get
    monkeypatch.setattr(Variable, "get", staticmethod(lambda key, *a, **kw: asked.append(key) or get(key, *a, **kw)))
    # The parsing context of a task process, as Airflow's task runner sets it.
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "kis_minute_bars")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "fetch_recent_bars")
    in_task = DagBag(dag_folder=str(DAGS_FOLDER / "kis_minute_bars.py"))
    assert in_task.import_errors == {} and asked == []
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID")
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID")
    DagBag(dag_folder=str(DAGS_FOLDER / "kis_minute_bars.py"))  # as the dag-processor parses it
    assert asked == ["kis_venues"]


def test_a_fetch_task_pushes_one_xcom(market) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    dag_run = market.run("kis_minute_bars", TICK)
    assert dag_run.state == "success"
    with create_session() as session:
        pushed = session.execute(
            select(XComModel.map_index, func.count())
            .where(XComModel.dag_id == "kis_minute_bars", XComModel.run_id == dag_run.run_id,
                   XComModel.task_id == "fetch_recent_bars")
            .group_by(XComModel.map_index)
        ).all()
    assert sorted(pushed) == [(index, 1) for index in range(len(CODES))]
