"""A simulated trading day, end to end: `make demo`.

The KIS simulator plays one session; Airflow runs `kis_minute_bars` at a handful of minutes (a
morning with gaps, as after a late start or an outage) and then the backfill, all with
`dag.test()` against a PostgreSQL metadata database and a fresh market database on the private
cluster. It prints what each run stored, the alerts raised, the day's verification report and
what the day cost in KIS requests. Airflow's own log goes to a file, named at the end.

    python -m devtools.demo [--day YYYY-MM-DD] [--codes N] [--venues krx,nxt,unified]

`--venues unified` plays the whole Korean trading day, 08:00-20:00, with Nextrade: minute runs in
its pre-market and after-market too, and `kis_minute_backfill_nextrade` at 20:10.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from devtools import airflow_env, localpg

MINUTE_TICKS = ["09:01", "09:02", "09:03", "10:31", "12:47", "15:31"]
# With Nextrade: a pre-market tick, and after-market ticks in the evening.
NEXTRADE_TICKS = ["08:31", "17:02", "19:31"]
BACKFILLS = {"kis_minute_backfill": "16:00", "kis_minute_backfill_nextrade": "20:10"}


def _last_regular_session(calendar, before: date) -> date:
    day = before - timedelta(days=1)
    while not calendar.is_session(day) or calendar.session(day).open.hour != 9:
        day -= timedelta(days=1)
    return day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", type=date.fromisoformat, help="a session day (default: the last regular one)")
    parser.add_argument("--codes", type=int, default=50, help="how many watch-list codes (default 50)")
    parser.add_argument(
        "--venues", default="krx", help="the Variable kis_venues, comma separated: krx, nxt, unified (default krx)"
    )
    args = parser.parse_args()

    localpg.start()
    localpg.wait_until_accepting()
    env = airflow_env.environment("demo")
    localpg.create_database(env["AIRFLOW_CONN_KIS_MARKET_DB"].rsplit("/", 1)[1], drop_existing=True)
    airflow_env.prepare(env)
    os.environ.update(env)
    # `airflow dags test` semantics: dag.test() cannot finish runs of DAGs that declare deadlines.
    os.environ["KIS_DEADLINE_ALERTS"] = "off"
    log_file = Path(env["AIRFLOW_HOME"]) / "demo.log"
    say = _console_with_everything_else_to(log_file)

    sys.path.insert(0, str(airflow_env.REPO / "plugins"))
    from kis.bar import KST
    from kis.calendar import default_calendar
    from kis.venues import Venue, parse_venues
    from kis.watchlist import load_watchlist

    from simulator.testing import run_simulator

    venues = parse_venues([name for name in args.venues.split(",") if name.strip()])
    os.environ["AIRFLOW_VAR_KIS_VENUES"] = json.dumps([venue.value for venue in venues])
    nextrade = any(venue is not Venue.KRX for venue in venues)

    calendar = default_calendar()
    day = args.day or _last_regular_session(calendar, datetime.now(KST).date())
    session = calendar.session(day)
    if session is None:
        sys.exit(f"{day} is not a KRX session")
    codes = list(load_watchlist().codes[: args.codes])
    os.environ["AIRFLOW_VAR_KIS_WATCHLIST"] = ",".join(codes)

    say(
        f"Simulated session {day} ({session.open:%H:%M}-{session.close:%H:%M} KST), {len(codes)} codes, "
        f"venues {', '.join(venue.value for venue in venues)}"
    )
    started = time.monotonic()
    with run_simulator(now=session.open) as sim:
        os.environ["AIRFLOW_CONN_KIS_DEFAULT"] = airflow_env.kis_connection(
            sim.host, sim.port, appkey=sim.appkey, appsecret=sim.appsecret
        )
        from airflow.dag_processing.dagbag import DagBag

        dagbag = DagBag(dag_folder=str(airflow_env.REPO / "dags"))
        if dagbag.import_errors:
            sys.exit(f"DAG import errors: {dagbag.import_errors}")

        def run(dag_id: str, tick: datetime):
            sim.set_now(tick + timedelta(seconds=2))
            return dagbag.get_dag(dag_id).test(logical_date=tick)

        at = lambda hhmm: datetime.combine(day, datetime.strptime(hhmm, "%H:%M").time(), tzinfo=KST)
        minute_ticks = sorted(MINUTE_TICKS + (NEXTRADE_TICKS if nextrade else []))
        runs = [("kis_minute_bars", hhmm) for hhmm in minute_ticks] + list(BACKFILLS.items())
        for dag_id, hhmm in sorted(runs, key=lambda run: run[1]):
            began = time.monotonic()
            dag_run = run(dag_id, at(hhmm))
            say(
                f"  {dag_id:<28} {hhmm}  {dag_run.state:<8} {time.monotonic() - began:5.1f} s"
                f"  bars stored so far: {_count_bars(env, day):>6}"
            )
        counters = sim.counters()

    _print_outcome(say, env, day, counters, len(codes), len(minute_ticks))
    say(f"\nDone in {time.monotonic() - started:.0f} s. Airflow's log: {log_file}")


def _console_with_everything_else_to(path: Path):
    """Points this process's stdout and stderr (Airflow's task logs) at ``path``; returns a print
    function that still writes to the terminal."""
    console = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as log:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            os.dup2(log.fileno(), stream.fileno())
    return functools.partial(print, file=console, flush=True)


def _query(env: dict[str, str], sql: str, *params):
    import psycopg

    with psycopg.connect(env["AIRFLOW_CONN_KIS_MARKET_DB"]) as conn:
        return conn.execute(sql, params).fetchall()


def _count_bars(env: dict[str, str], day: date) -> int:
    return _query(env, "SELECT count(*) FROM stock_prices_minute WHERE datetime::date = %s", day)[0][0]


def _print_outcome(say, env: dict[str, str], day: date, counters: dict, codes: int, minute_runs: int) -> None:
    import psycopg
    from kis import storage
    from kis.verification import format_report
    from psycopg.rows import class_row

    alerts = _query(
        env, "SELECT kind, count(*) FROM collection_alerts WHERE trading_date = %s GROUP BY 1 ORDER BY 1", day
    )
    say("\nAlerts raised:", ", ".join(f"{n} {kind}" for kind, n in alerts) or "none")
    with psycopg.connect(env["AIRFLOW_CONN_KIS_MARKET_DB"]) as conn, conn.cursor(
        row_factory=class_row(storage.DayVerification)
    ) as cur:
            report = cur.execute(
            "SELECT * FROM minute_verification WHERE trading_date = %s ORDER BY venue, stock_code", (day,)
        ).fetchall()
    for venue in sorted({row.venue for row in report}):
        say(f"\nVerification of {day} on {venue}:\n{format_report([row for row in report if row.venue == venue])}")
    requests = counters["requests_by_endpoint"]
    data_requests = sum(n for endpoint, n in requests.items() if "inquire" in endpoint)
    say(
        f"\nKIS requests: {data_requests} data calls ({minute_runs} minute runs: one call per code and venue "
        f"that had a bar closing, {codes} codes; plus the backfills' pages), {requests.get('tokenP', 0)} token call(s), "
        f"{counters['tokens_issued']} token(s) issued; peak {counters['peak_per_second']}/s, "
        f"{counters['egw00201']} EGW00201 answers"
    )


if __name__ == "__main__":
    main()
