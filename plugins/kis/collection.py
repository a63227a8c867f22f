"""What the two DAGs do, as plain functions: the DAG files only wire these into tasks.

Every function takes the run's own time (its logical date) and never the wall clock, so a rerun
of an old run fetches and checks the same minutes, and tests drive a simulated day by choosing
logical dates.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from kis import alerts, schema, storage
from kis.alerts import Alert, send_alert
from kis.bars import KST
from kis.calendar import CLOSING_PRINT_GRACE, Session, default_calendar
from kis.errors import KisError, KisUnknownCode
from kis.watchlist import load_watchlist

log = logging.getLogger(__name__)

INCLUDE_DIR = Path(__file__).parents[2] / "include"
KIS_CONN_ID = "kis_default"
MARKET_DB_CONN_ID = alerts.MARKET_DB_CONN_ID


# A closed minute still missing this long after it closed is a live gap: every run re-reads the
# last 30 minutes, so a minute one run missed is normally healed by the next.
LIVE_GAP_AFTER = timedelta(minutes=2)


@dataclass(frozen=True)
class Run:
    """The DAG run a task belongs to: its ids, for alerts, and its moment, for everything else."""

    dag_id: str
    run_id: str
    at: datetime  # the logical date; for a manual run without one, when it was triggered

    @classmethod
    def of(cls, dag_run: Any) -> Run:
        return cls(dag_run.dag_id, dag_run.run_id, dag_run.logical_date or dag_run.run_after)


# The label of a mapped fetch task in the grid: its code, or its first and last codes for a batch
# (Airflow keeps at most 250 characters of it: a list of every code would not fit).
BATCH_LABEL = (
    "{% set codes = task.op_kwargs['codes'] %}{{ codes[0] }}"
    "{% if codes | length > 1 %}…{{ codes[-1] }} ({{ codes | length }} codes){% endif %}"
)


def upsert_bars_step(fetch_task_id: str, *, bars_key: str | None = None):
    """The upsert task of both DAGs: one set-based statement over every bar the mapped fetches
    returned (their XComs, or each XCom's ``bars_key``), concatenated into one JSON parameter.

    It runs as soon as the fetches are done and one of them succeeded, so one failed code never
    holds back the others. The partitions the batch needs are ensured in the same transaction.
    """
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

    # A list of task ids makes xcom_pull return a list even when there is one mapped task.
    pulled = f"ti.xcom_pull(task_ids=['{fetch_task_id}']) | reject('none')"
    if bars_key:
        pulled += f" | map(attribute='{bars_key}')"
    return SQLExecuteQueryOperator(
        task_id="upsert_bars",
        conn_id=MARKET_DB_CONN_ID,
        sql=["sql/ensure_minute_partitions.sql", "sql/upsert_minute_bars.sql"],
        parameters={"bars": "{{ " + pulled + " | sum(start=[]) | tojson }}"},
        trigger_rule="all_done_min_one_success",
        show_return_value_in_logs=True,
    )


class CollectionFailed(AirflowFailException):
    """A task's work failed in a way that retrying cannot mend: Airflow fails it without retries."""


def minute_run_deadline() -> timedelta:
    """How long after its tick a minute run must be done (``KIS_MINUTE_RUN_DEADLINE_SECONDS``)."""
    return timedelta(seconds=int(os.environ.get("KIS_MINUTE_RUN_DEADLINE_SECONDS", "50")))


def backfill_deadline() -> timedelta:
    """How long after 16:00 the backfill must be done (``KIS_BACKFILL_DEADLINE_MINUTES``): by
    default 17:30, an hour after the latest close (16:30 on a CSAT day)."""
    return timedelta(minutes=int(os.environ.get("KIS_BACKFILL_DEADLINE_MINUTES", "90")))


def _variable(key: str, default: str | None = None) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(key, default=default)


def _market_db():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=MARKET_DB_CONN_ID).get_conn()


def _kis_hook():
    from kis.hook import KisHook

    return KisHook(kis_conn_id=KIS_CONN_ID)


def _watchlist_batches(conn, day: date) -> list[list[str]]:
    """The day's watch-list in batches, without the codes KIS already called unknown today."""
    watchlist = load_watchlist(_variable("kis_watchlist"))
    if watchlist.invalid:
        log.warning("Invalid watch-list entries, never sent to KIS: %s", ", ".join(watchlist.invalid))
    unknown = alerts.codes_alerted(conn, "unknown_code", day)
    if unknown:
        log.warning("Codes KIS reported unknown today, not asked again: %s", ", ".join(sorted(unknown)))
    codes = [code for code in watchlist.codes if code not in unknown]
    size = int(_variable("kis_codes_per_task", "1"))
    if size < 1:
        raise ValueError(f"kis_codes_per_task must be at least 1, got {size}")
    return [codes[i : i + size] for i in range(0, len(codes), size)]


def _prepared_market_db(day: date):
    """The market database with its schema current (one query when it is). The partitions a batch
    needs are ensured by the upsert step itself, in its own transaction."""
    conn = _market_db()
    applied = schema.migrate(conn, today=day)
    if applied:
        log.info("Market schema upgraded: %s", ", ".join(applied))
    conn.commit()
    return conn


# --- kis_minute_bars ----------------------------------------------------------------------------


def plan_minute_run(run: Run) -> list[list[str]]:
    """The batches of codes to fetch for the run's minute; empty (the run skips) outside the session."""
    if not default_calendar().in_collection_window(run.at):
        log.info("No session to collect at %s KST: skipping without calling KIS", run.at.astimezone(KST))
        return []
    day = run.at.astimezone(KST).date()
    with _prepared_market_db(day) as conn:
        return _watchlist_batches(conn, day)


def fetch_recent_bars(codes: Sequence[str], run: Run) -> list[dict[str, Any]]:
    """The closed bars of the last 30 minutes before the run's minute for each code, as records.

    An unknown code is alerted (once: later runs of the day leave it out) and skipped; any other
    failure raises after the other codes were asked, so Airflow retries the task.
    """
    until = default_calendar().last_closed_minute(run.at)
    if until is None:
        return []
    records: list[dict[str, Any]] = []
    failed: list[str] = []
    unknown: list[str] = []
    with _kis_hook() as hook:
        for code in codes:
            try:
                result = hook.recent_bars(code, until=until)
            except KisUnknownCode as err:
                _alert_unknown_code(code, err, until.date(), run)
                unknown.append(code)
                continue
            except KisError as err:
                log.error("%s: %s", code, err)
                failed.append(code)
                continue
            _log_rejects(code, result.rejected)
            records.extend(bar.as_record() for bar in result.bars)
            log.info("%s: %d closed bars up to %s", code, len(result.bars), until.strftime("%H:%M"))
    if failed:
        raise RuntimeError(f"KIS failed for {', '.join(failed)} after the hook's own retries")
    if unknown and not records:
        raise CollectionFailed(f"KIS does not know {', '.join(unknown)}: alerted, not asked again today")
    return records


def check_live_gaps(batches: Sequence[Sequence[str]], fetched: Sequence[Any], run: Run) -> int:
    """Alerts, once per gap, the closed minutes still missing ``LIVE_GAP_AFTER`` after they closed;
    then fails when a fetch task failed, so the run shows red until that task is cleared."""
    calendar = default_calendar()
    session = calendar.session(run.at.astimezone(KST).date())
    horizon = calendar.last_closed_minute(run.at - LIVE_GAP_AFTER) if session else None
    gaps: list[tuple[str, datetime]] = []
    if horizon is not None:
        # The closing bar may print up to five minutes late; the day's verification checks it.
        minutes = [m for m in session.bar_minutes if m <= horizon and m != session.closing_bar]
        with _market_db() as conn:
            # A code KIS called unknown (maybe in this very run) is alerted as that, not as gaps.
            unknown = alerts.codes_alerted(conn, "unknown_code", session.day)
            codes = [code for batch in batches for code in batch if code not in unknown]
            gaps = storage.live_gaps(conn, codes, minutes, run_id=run.run_id)
    by_code: dict[str, list[datetime]] = {}
    for code, minute in gaps:
        by_code.setdefault(code, []).append(minute.replace(tzinfo=KST))
    for code, missing in by_code.items():
        send_alert(
            Alert(
                kind="gap",
                message=(
                    f"{code}: {len(missing)} closed minute(s) still missing: {_minutes_text(missing)}"
                    " (a VI or a halt also leaves minutes without bars; the backfill's verification decides)"
                ),
                trading_date=session.day,
                dag_id=run.dag_id,
                run_id=run.run_id,
                stock_code=code,
                minutes=missing,
            )
        )
    _fail_when_fetches_failed(batches, fetched)
    return len(gaps)


# --- kis_minute_backfill ------------------------------------------------------------------------


@dataclass(frozen=True)
class BackfillDay:
    """The day a backfill run works on, and the run's own date (what the API calls today)."""

    session: Session | None
    day: date
    today: date

    @classmethod
    def of(cls, dag_run: Any, params: dict[str, Any]) -> BackfillDay:
        """The run's ``date`` parameter, or the run's own day when the parameter is empty."""
        today = Run.of(dag_run).at.astimezone(KST).date()
        day = date.fromisoformat(params["date"]) if params.get("date") else today
        if day > today:
            raise CollectionFailed(f"{day} is after the run's date {today}: there are no bars yet")
        return cls(session=default_calendar().session(day), day=day, today=today)


def plan_backfill(target: BackfillDay) -> list[list[str]]:
    """The batches of codes to backfill; empty (the run skips) when the day has no session."""
    if target.session is None:
        log.info("%s is not a KRX session: nothing to backfill", target.day)
        return []
    if target.day < target.today:
        with _kis_hook() as hook:
            if hook.settings.environment != "real":
                raise CollectionFailed(
                    f"{target.day} is a past date: KIS serves past minute bars (FHKST03010230) to real "
                    "accounts only, and the kis_default connection is a mock account"
                )
    with _prepared_market_db(target.day) as conn:
        keep_months = storage.retention_months()
        if keep_months is not None:
            removed = storage.apply_retention(conn, keep_months, today=target.today)
            log.info("Retention (%d months): removed partitions %s", keep_months, ", ".join(removed) or "none")
        return _watchlist_batches(conn, target.day)


def backfill_wait_until(dag_run: Any, params: dict[str, Any]) -> str:
    """When the day's session is over, closing print included (the close sensor's target)."""
    target = BackfillDay.of(dag_run, params)
    return (target.session.close + CLOSING_PRINT_GRACE).isoformat() if target.session else target.day.isoformat()


def fetch_session_bars(codes: Sequence[str], target: BackfillDay, *, batch: int, batches: int) -> dict[str, Any]:
    """Every bar of the day for each code, with the day volumes KIS reported."""
    records: list[dict[str, Any]] = []
    volumes: dict[str, int] = {}
    rejected: dict[str, int] = {}
    with _kis_hook() as hook:
        for code in codes:
            result = hook.session_bars(code, target.session, today=target.today)
            _log_rejects(code, result.rejected)
            records.extend(bar.as_record() for bar in result.bars)
            rejected[code] = len(result.rejected)
            if result.cumulative_volume is not None:
                volumes[code] = result.cumulative_volume
            log.info(
                "Batch %d/%d, %s: %d pages, %d bars, %d rejected rows",
                batch + 1, batches, code, result.pages, len(result.bars), len(result.rejected),
            )
    return {"bars": records, "volumes": volumes, "rejected": rejected}


def verify_day(target: BackfillDay, batches: Sequence[Sequence[str]] | None, fetched: Sequence[dict[str, Any]],
               run: Run) -> dict[str, Any]:
    """Verifies the day into the report table; raises, after alerting, when the day falls short.

    The day falls short when a code has a gap its volumes do not explain, or when its completeness
    is under the Variable ``kis_completeness_threshold`` (0.98): the expected bars that are stored
    or explained (a VI, a halt, a minute without trades, when the day's volumes add up), over the
    expected bars.
    """
    if batches is None:
        raise CollectionFailed("Nothing was fetched: the trading-day gate failed (see its log)")
    session = target.session
    codes = [code for batch in batches for code in batch]
    volumes: dict[str, int] = {}
    for result in fetched:
        volumes |= result["volumes"]
    with _market_db() as conn:
        report = storage.verify_day(conn, session.day, session.bar_minutes, codes, volumes or None, run_id=run.run_id)
    expected = sum(r.expected for r in report)
    present = sum(r.present for r in report)
    explained = sum(r.expected - r.present for r in report if r.status == "complete_with_explained_absences")
    completeness = (present + explained) / expected if expected else 1.0
    threshold = float(_variable("kis_completeness_threshold", "0.98"))
    text = format_report(report)
    log.info("Verification of %s:\n%s", session.day, text)
    short = [r for r in report if r.status in ("gap", "no_data")]
    summary = {
        "day": session.day.isoformat(),
        "codes": len(report),
        "present": present,
        "explained_absences": explained,
        "expected": expected,
        "completeness": round(completeness, 5),
        "threshold": threshold,
        "codes_with_gaps": [r.stock_code for r in short],
    }
    if completeness < threshold or short:
        send_alert(
            Alert(
                kind="incomplete_day",
                message=(
                    f"{session.day}: {present}/{expected} bars and {explained} explained absences "
                    f"({completeness:.2%}, threshold {threshold:.0%}); "
                    f"codes with unexplained gaps: {', '.join(summary['codes_with_gaps']) or 'none'}\n{text}"
                ),
                trading_date=session.day,
                dag_id=run.dag_id,
                run_id=run.run_id,
                details=summary | {"missing": {r.stock_code: [m.isoformat() for m in r.missing_minutes] for r in short}},
            )
        )
        raise CollectionFailed(
            f"{session.day} is incomplete: {completeness:.2%} of the expected bars, "
            f"gaps in {', '.join(summary['codes_with_gaps']) or 'no code'} (see the report above)"
        )
    _fail_when_fetches_failed(batches, fetched)
    return summary


def format_report(report: Sequence[storage.DayVerification]) -> str:
    """The verification as a fixed-width table, one line per code, for logs and the demo."""
    lines = [f"{'code':<7} {'status':<33} {'present':>11} {'volume':<9} missing minutes"]
    for r in report:
        lines.append(
            f"{r.stock_code:<7} {r.status:<33} {f'{r.present}/{r.expected}':>11} {r.volume_status:<9} "
            f"{_minutes_text(r.missing_minutes) or '-'}"
        )
    present, expected = sum(r.present for r in report), sum(r.expected for r in report)
    lines.append(f"{'total':<7} {'':<33} {f'{present}/{expected}':>11}")
    return "\n".join(lines)


# --- shared -------------------------------------------------------------------------------------


def _fail_when_fetches_failed(batches: Sequence[Sequence[str]], fetched: Sequence[Any]) -> None:
    """Failed mapped fetches left no XCom: fail this task so that the run shows it."""
    if len(fetched) < len(batches):
        raise CollectionFailed(
            f"{len(batches) - len(fetched)} of {len(batches)} fetch tasks failed: their bars are not stored. "
            "Clear the failed fetch tasks (with downstream) to fetch them again."
        )


def _alert_unknown_code(code: str, err: KisUnknownCode, day: date, run: Run) -> None:
    send_alert(
        Alert(
            kind="unknown_code",
            message=f"KIS does not know {code} ({err.msg_cd}: {err.msg1}); left out for the rest of {day}",
            trading_date=day,
            dag_id=run.dag_id,
            run_id=run.run_id,
            stock_code=code,
            details={"msg_cd": err.msg_cd, "msg1": err.msg1},
        )
    )


def _log_rejects(code: str, rejected: Sequence[Any]) -> None:
    for reject in rejected:
        log.warning("%s: rejected row (%s): %s", code, reject.reason, dict(reject.row))


def _minutes_text(minutes: Sequence[datetime], shown: int = 12) -> str:
    text = ", ".join(m.strftime("%H:%M") for m in minutes[:shown])
    return text + (f" … (+{len(minutes) - shown})" if len(minutes) > shown else "")
