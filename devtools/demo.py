"""A simulated trading day, end to end: `make demo`.

The KIS simulator plays one session; Airflow runs `kis_minute_bars` at a handful of minutes (a
morning with gaps, as after a late start or an outage) and then the backfill, all with
`dag.test()` against a PostgreSQL metadata database and a fresh market database on the private
cluster. It prints what each run stored, the alerts raised and what became of them, the day's
verification report with its legend, what is still missing against the simulated market's own
record of the day, and what the day cost in KIS requests, each with a word on how to read it.
Airflow's own log goes to a file, named at the end.

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
import textwrap
import time
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

from devtools import airflow_env, localpg

MINUTE_TICKS = ["09:01", "09:02", "09:03", "10:31", "12:47", "15:31"]
# With Nextrade: a pre-market tick, and after-market ticks in the evening.
NEXTRADE_TICKS = ["08:31", "17:02", "19:31"]
BACKFILLS = {"kis_minute_backfill": "16:00", "kis_minute_backfill_nextrade": "20:10"}
# What the alerts the demo can raise are, in the report's words.
ALERT_KINDS = {
    "gap": "a minute run's live check: closed minutes still missing two minutes after they closed, one alert per "
    "code and run",
    "incomplete_day": "the backfill's verification: the day has gaps or is below the completeness threshold",
    "not_on_venue": "information: Nextrade does not trade the code, left out there for the day",
}


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
    minute_ticks = sorted(MINUTE_TICKS + (NEXTRADE_TICKS if nextrade else []))
    say(_paragraph(
        f"The minute DAG runs at {len(minute_ticks)} minutes only ({', '.join(minute_ticks)} KST), not every minute:"
        " gaps made on purpose, as after a late start or an outage. Each run fetches each code's last 30 closed bars,"
        " so the minutes between two runs beyond that reach stay missing and are alerted; the backfill after the"
        " close fetches the whole day again and verifies it."
    ))
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
        runs = [("kis_minute_bars", hhmm) for hhmm in minute_ticks] + list(BACKFILLS.items())
        for dag_id, hhmm in sorted(runs, key=lambda run: run[1]):
            began = time.monotonic()
            dag_run = run(dag_id, at(hhmm))
            say(
                f"  {dag_id:<28} {hhmm}  {dag_run.state:<8} {time.monotonic() - began:5.1f} s"
                f"  bars stored so far: {_count_bars(env, day):>6}"
            )
        counters = sim.counters()
        without_trades = {
            (venue.value, code): {
                datetime.fromisoformat(absence["minute"]).replace(tzinfo=None): absence["reason"]
                for absence in sim.absences(code, day, venue.value)
            }
            for venue in venues
            for code in codes
        }

    _print_outcome(say, env, day, counters, len(codes), len(minute_ticks), without_trades)
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


def _print_outcome(
    say, env: dict[str, str], day: date, counters: dict, codes: int, minute_runs: int,
    without_trades: dict[tuple[str, str], dict[datetime, str]],
) -> None:
    import psycopg
    from kis import storage
    from kis.verification import format_report
    from psycopg.rows import class_row

    alerts = _query(
        env,
        "SELECT kind, count(*), count(resolved_at), count(DISTINCT stock_code),"
        " array_agg(DISTINCT stock_code ORDER BY stock_code) FILTER (WHERE resolved_at IS NULL)"
        " FROM collection_alerts WHERE trading_date = %s GROUP BY 1 ORDER BY 1",
        day,
    )
    say("\nAlerts raised:", ", ".join(f"{n} {kind}" for kind, n, *_ in alerts) or "none")
    for kind, raised, resolved, alerted_codes, open_codes in alerts:
        settled = (
            f"{resolved} since resolved by the backfill's verification (it found the code's day complete)"
            + (f", {raised - resolved} open ({', '.join(filter(None, open_codes)) or 'the day'}: a verification settles"
               " only a day it finds complete; see their status below)"
               if raised > resolved else "")
            if kind in ("gap", "incomplete_day") else "information"
        )
        say(_paragraph(f"{kind}: {ALERT_KINDS.get(kind, 'see docs/operations.md')}; {alerted_codes} codes; {settled}", "  "))
    (alerted_minutes, still_missing), = _query(
        env,
        "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM stock_prices_minute s"
        "  WHERE s.stock_code = a.stock_code AND s.venue = coalesce(a.venue, 'krx') AND s.datetime = m))"
        " FROM collection_alerts a CROSS JOIN unnest(a.minutes) AS m WHERE a.kind = 'gap' AND a.trading_date = %s",
        day,
    )
    if alerted_minutes:
        say(_paragraph(
            f"The gap alerts named {alerted_minutes:,} code-minutes; {alerted_minutes - still_missing:,} of them are"
            f" stored now, fetched by the backfill{f', {still_missing} still missing (below)' if still_missing else ''}.",
            "  ",
        ))
    with psycopg.connect(env["AIRFLOW_CONN_KIS_MARKET_DB"]) as conn, conn.cursor(
        row_factory=class_row(storage.DayVerification)
    ) as cur:
            report = cur.execute(
            "SELECT * FROM minute_verification WHERE trading_date = %s ORDER BY venue, stock_code", (day,)
        ).fetchall()
    for venue in sorted({row.venue for row in report}):
        rows = [row for row in report if row.venue == venue]
        say(f"\nVerification of {day} on {venue}, after the backfill (present/expected bars of the grid):\n{format_report(rows)}")
        _say_what_is_missing(say, venue, rows, without_trades)
    requests = counters["requests_by_endpoint"]
    data_requests = sum(n for endpoint, n in requests.items() if "inquire" in endpoint)
    say(
        f"\nKIS requests: {data_requests} data calls ({minute_runs} minute runs: one call per code and venue "
        f"that had a bar closing, {codes} codes; plus the backfills' pages), {requests.get('tokenP', 0)} token call(s), "
        f"{counters['tokens_issued']} token(s) issued; peak {counters['peak_per_second']}/s, "
        f"{counters['egw00201']} EGW00201 answers"
    )


def _say_what_is_missing(say, venue: str, report, without_trades: dict[tuple[str, str], dict[datetime, str]]) -> None:
    """The minutes still without a bar, against the simulated market's own record: those it had no
    trade in have no bar anywhere, the others were lost."""
    missing = [(row.stock_code, minute) for row in report for minute in row.missing_minutes]
    if not missing:
        say("Nothing is missing: every minute of every code's grid is stored.")
        return
    reasons = Counter(
        without_trades[(venue, code)][minute].replace("_", " ")
        for code, minute in missing
        if minute in without_trades[(venue, code)]
    )
    lost = len(missing) - sum(reasons.values())
    say(_paragraph(
        f"Still missing: {len(missing)} minutes of {len(codes := {code for code, _ in missing})}"
        f" code{'s' if len(codes) > 1 else ''}. The simulated market had "
        f"no trade in {sum(reasons.values())} of them ({', '.join(f'{reason}: {n}' for reason, n in reasons.items())}):"
        " no bar exists for those."
        + (f" {lost} had trades: lost, see the report." if lost else " Nothing was lost.")
        + " Where KIS's day volume includes off-session trades, the verification cannot prove a minute had no trade"
        " and says unverifiable; where the volumes add up, it says complete_with_explained_absences."
    ))


def _paragraph(text: str, indent: str = "") -> str:
    return textwrap.fill(text, width=100, initial_indent=indent, subsequent_indent=indent + "  ")


if __name__ == "__main__":
    main()
