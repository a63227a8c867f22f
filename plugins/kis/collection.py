"""What both collection DAGs share: the run, the watch-list in batches, the upsert step, alerts.

Each DAG's own task logic is in the module named after it (:mod:`kis.minute_bars`,
:mod:`kis.minute_backfill`); the DAG files only wire those functions into tasks. Every function
takes the run's own time (its logical date) and never the wall clock, so a rerun of an old run
fetches and checks the same minutes, and tests drive a simulated day by choosing logical dates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from kis import alerts, metrics, schema
from kis.alerts import Alert, send_alert
from kis.errors import KisError, KisUnknownCode, KisUnsupported
from kis.resources import KIS_CONN_ID, MARKET_DB_CONN_ID
from kis.venues import DEFAULT_VENUES, Venue, parse_venues
from kis.watchlist import load_watchlist

log = logging.getLogger(__name__)

T = TypeVar("T")

# The alert of a code that still failed on its fetch task's last try.
FETCH_FAILED = "fetch_failed"
# The information that Nextrade does not trade a watch-list code: once a day, then never asked again.
NOT_ON_VENUE = "not_on_venue"


@dataclass(frozen=True)
class Run:
    """The DAG run a task belongs to: its ids, for alerts, and its moment, for everything else."""

    dag_id: str
    run_id: str
    at: datetime  # the logical date; for a manual run without one, when it was triggered

    @classmethod
    def of(cls, dag_run: Any) -> Run:
        return cls(dag_run.dag_id, dag_run.run_id, dag_run.logical_date or dag_run.run_after)


def batch_label(op_kwargs: Mapping[str, Any]) -> str:
    """The label of a mapped fetch task in the grid: its venue unless KRX, then its code, or its
    first and last codes for a batch (Airflow keeps at most 250 characters of it: a list of every
    code would not fit)."""
    codes, venue = op_kwargs["codes"], op_kwargs.get("venue", Venue.KRX.value)
    label = "" if venue == Venue.KRX.value else f"{venue} "
    return label + (codes[0] if len(codes) == 1 else f"{codes[0]}…{codes[-1]} ({len(codes)} codes)")


# The fetch tasks' map_index_template, with batch_label among the DAG's user_defined_filters: each
# task process compiles its template, and this one compiles in a tenth of the time the label's
# logic took as Jinja statements (0.3 ms instead of 2.4).
BATCH_LABEL = "{{ task.op_kwargs | batch_label }}"
LABEL_FILTERS = {"batch_label": batch_label}


def upsert_bars_step(fetch_task_id: str):
    """The upsert task of both DAGs: one set-based statement over every bar the mapped fetches
    returned (their XComs, each a venue's bars by code, see :func:`fetch_batch`), sent as one JSON
    parameter.

    It runs as soon as the fetches are done, failed ones included: a fetch task with a failed code
    pushed the other codes' bars before failing (``fetch_batch``), and xcom_pull returns the XComs
    of failed task instances too, so one failed code never holds back the others, even when it
    shares the run's only batch. The partitions the batch needs are ensured in the same transaction.
    """
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

    # A list of task ids makes xcom_pull return a list even when there is one mapped task.
    pulled = f"ti.xcom_pull(task_ids=['{fetch_task_id}']) | reject('none') | list"
    return SQLExecuteQueryOperator(
        task_id="upsert_bars",
        conn_id=MARKET_DB_CONN_ID,
        sql=["sql/ensure_minute_partitions.sql", "sql/upsert_minute_bars.sql"],
        parameters={"bars": "{{ " + pulled + " | tojson }}"},
        # The log says what the upsert did in one line, the operator's "result: {counts}": the hook
        # does not log each statement again with its parameter (every bar of the batch).
        hook_params={"log_sql": False},
        output_processor=upsert_counts,
        trigger_rule="all_done",
        on_success_callback=metrics.bars_stored,
    )


def upsert_counts(results: Sequence[Any], descriptions: Sequence[Any]) -> dict[str, int]:
    """The upsert step's value (its XCom and its log line): the one row of counts of
    upsert_minute_bars.sql, the last statement, by column name (received, duplicates, inserted,
    updated, unchanged)."""
    return {column[0]: count for column, count in zip(descriptions[-1], results[-1][0])}


class CollectionFailed(AirflowFailException):
    """A task's work failed in a way that retrying cannot mend: Airflow fails it without retries."""


def variable(key: str, default: str | None = None) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(key, default=default)


def market_db():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=MARKET_DB_CONN_ID).get_conn()


def kis_hook():
    from kis.hook import KisHook

    return KisHook(kis_conn_id=KIS_CONN_ID)


def configured_venues() -> tuple[Venue, ...]:
    """The venues of the Variable ``kis_venues`` (default ``["krx"]``)."""
    return parse_venues(variable("kis_venues"))


def scheduled_venues() -> tuple[Venue, ...]:
    """The venues a DAG file's schedule ticks for: :func:`configured_venues`, except in a task's
    own parse of its DAG file (Airflow's parsing context then names the task), which runs no
    schedule: the default, without a Variable request to the API server from every task."""
    from airflow.sdk import get_parsing_context

    return DEFAULT_VENUES if get_parsing_context().task_id is not None else configured_venues()


def watchlist_batches(conn, day: date, venues: Sequence[Venue] = (Venue.KRX,)) -> list[dict[str, Any]]:
    """The day's watch-list in batches for each venue, ``{"venue": ..., "codes": [...]}``: without
    the codes KIS already called unknown today, nor on a venue the codes it does not trade."""
    watchlist = load_watchlist(variable("kis_watchlist"))
    if watchlist.invalid:
        log.warning("Invalid watch-list entries, never sent to KIS: %s", ", ".join(watchlist.invalid))
    unknown = alerts.codes_alerted(conn, "unknown_code", day)
    if unknown:
        log.warning("Codes KIS reported unknown today, not asked again: %s", ", ".join(sorted(unknown)))
    per_task = int(variable("kis_codes_per_task", "1"))
    batches = []
    for venue in venues:
        not_traded = alerts.codes_alerted(conn, NOT_ON_VENUE, day, venue=venue.value)
        if not_traded:
            log.info("Not traded on %s today, not asked again: %s", venue.label, ", ".join(sorted(not_traded)))
        for codes in watchlist.batches(per_task, leaving_out=unknown | not_traded):
            batches.append({"venue": venue.value, "codes": codes})
    return batches


def prepared_market_db(day: date):
    """The market database with its schema current (one query when it is). The partitions a batch
    needs are ensured by the upsert step itself, in its own transaction."""
    conn = market_db()
    applied = schema.migrate(conn, today=day)
    if applied:
        log.info("Market schema upgraded: %s", ", ".join(applied))
    conn.commit()
    return conn


class CodesFailed(RuntimeError):
    """Codes of a batch failed for a reason a retry may mend; the others' result is already pushed."""


def fetch_batch(
    codes: Sequence[str],
    fetch_code: Callable[[Any, str], T],
    assemble: Callable[[dict[str, T]], dict[str, Any]],
    *,
    day: date,
    run: Run,
    venue: Venue = Venue.KRX,
    ti: Any | None = None,
) -> dict[str, Any]:
    """The return value of a mapped fetch task: each code of its batch fetched on its own, so that
    one code never takes the others down.

    ``fetch_code(hook, code)`` fetches one code; ``assemble`` builds the task's value from the codes
    fetched, its bars under ``"bars"`` as ``kis.bars.bars_by_code`` lists them (the upsert's
    format: the venue is said once, at the top); ``"venue"``, ``"fetched"`` and ``"failed"`` (code:
    reason) are added. An unknown
    code is alerted at once (a retry of the task neither asks nor alerts it again); on Nextrade the
    same answer means Nextrade does not trade the code: it is reported once, as information, and
    left out. Any other ``KisError`` is recorded with its reason. When a code failed, the value is
    pushed as the task's ``return_value`` XCom and the task raises: Airflow keeps the XCom of a
    failed try (it clears it when the next try starts), and the upsert, which pulls the XComs of
    every mapped fetch, stores the other codes. ``CollectionFailed`` (no retry) when every failed
    code is unknown, else ``CodesFailed``, retried by Airflow; on the last try each code that still
    failed is alerted (``fetch_failed``), so a code is alerted once whatever the number of tries.
    """
    unknown_before: set[str] = set()
    not_traded: set[str] = set()
    if ti is not None and ti.try_number > 1:
        with market_db() as conn:
            unknown_before = alerts.codes_alerted(conn, "unknown_code", day) & set(codes)
            not_traded = alerts.codes_alerted(conn, NOT_ON_VENUE, day, venue=venue.value) & set(codes)
    fetched: dict[str, T] = {}
    failed = {code: "unknown to KIS (alerted by an earlier try)" for code in unknown_before}
    unknown = set(unknown_before)
    with kis_hook() as hook:
        for code in codes:
            if code in unknown_before or code in not_traded:
                continue
            try:
                fetched[code] = fetch_code(hook, code)
            except KisUnsupported as err:
                # The account cannot serve the request (a past day on a mock account): no code of
                # the batch would succeed, and no retry can change that.
                raise CollectionFailed(str(err)) from None
            except KisUnknownCode as err:
                if venue is Venue.NEXTRADE:
                    report_not_on_venue(code, err, day, run, venue)
                    continue
                alert_unknown_code(code, err, day, run)
                unknown.add(code)
                failed[code] = f"unknown to KIS ({err.msg_cd}: {err.msg1})"
            except KisError as err:
                log.error("%s: %s", code, err)
                failed[code] = str(err)
    value = assemble(fetched) | {"venue": venue.value, "fetched": list(fetched), "failed": failed}
    if not failed:
        return value
    if ti is not None:
        ti.xcom_push("return_value", value)
    reasons = "; ".join(f"{code}: {reason}" for code, reason in sorted(failed.items()))
    stored = f"the other {len(fetched)} codes of the batch are stored" if fetched else "no code of the batch was fetched"
    if set(failed) <= unknown:
        raise CollectionFailed(f"{len(failed)} of {len(codes)} codes failed ({reasons}); {stored}")
    last_try = ti is None or ti.try_number > ti.max_tries
    if last_try:
        for code in sorted(set(failed) - unknown):
            alert_fetch_failed(code, failed[code], day, run, tries=ti.try_number if ti is not None else 1, venue=venue)
    raise CodesFailed(
        f"{len(failed)} of {len(codes)} codes failed ({reasons}); {stored}"
        + ("" if last_try else "; retried")
    )


def alert_fetch_failed(code: str, reason: str, day: date, run: Run, *, tries: int, venue: Venue = Venue.KRX) -> None:
    """The alert of a code its fetch task's last try failed; resolved by a later run that fetched it
    (see :func:`resolve_fetch_alerts`), hence its venue."""
    send_alert(
        Alert(
            kind=FETCH_FAILED,
            message=f"{code}{'' if venue is Venue.KRX else f' on {venue.label}'}: not fetched after {tries} tries: "
            f"{reason}. The other codes of its batch go on to the upsert; clear its fetch task to fetch it again",
            trading_date=day,
            dag_id=run.dag_id,
            run_id=run.run_id,
            stock_code=code,
            venue=venue.value,
            details={"reason": reason, "tries": tries},
        )
    )


def resolve_fetch_alerts(conn: Any, fetched: Sequence[Any], day: date, run: Run) -> None:
    """Marks resolved the ``fetch_failed`` alerts of every code the run's fetch tasks fetched (their
    XComs' ``"fetched"``): once per run, after the upsert stored them, one statement per venue. A
    failure is logged, never raised: the bars stored matter more than the alert's state."""
    by_venue: dict[str, list[str]] = {}
    for result in fetched:
        if isinstance(result, dict):  # a failed map index pulls None
            by_venue.setdefault(result.get("venue", Venue.KRX.value), []).extend(result.get("fetched", ()))
    try:
        with conn.transaction():  # a savepoint: a failure here leaves the caller's work standing
            resolved = [
                code
                for venue, codes in by_venue.items()
                for code in alerts.resolve_fetched(conn, day, venue, codes, run_id=run.run_id)
            ]
    except Exception:
        log.exception("Could not mark the fetch_failed alerts of the fetched codes resolved")
        return
    if resolved:
        log.info("Fetched now, their fetch_failed alerts resolved: %s", ", ".join(resolved))


def known_codes(batches: Sequence[Mapping[str, Any]], day: date, venue: Venue, conn: Any = None) -> list[str]:
    """The codes of ``venue``'s batches without those KIS called unknown on ``day`` (maybe in this
    very run; alerted as unknown, never as gaps) and those the venue does not trade."""
    if conn is None:
        with market_db() as own:
            return known_codes(batches, day, venue, own)
    left_out = alerts.codes_alerted(conn, "unknown_code", day) | alerts.codes_alerted(
        conn, NOT_ON_VENUE, day, venue=venue.value
    )
    return [code for batch in batches if batch["venue"] == venue.value for code in batch["codes"] if code not in left_out]


def fail_when_fetches_failed(batches: Sequence[Any], fetched: Sequence[Any]) -> None:
    """Fails this task when a mapped fetch failed, so that the run shows it: a fetch that failed
    outright left no XCom, one with failed codes left its partial value with ``"failed"``."""
    pushed = [result for result in fetched if isinstance(result, dict)]  # a failed map index pulls None
    failed = {
        code if result.get("venue", Venue.KRX.value) == Venue.KRX.value else f"{code} on {result['venue']}": reason
        for result in pushed
        for code, reason in (result.get("failed") or {}).items()
    }
    missing = len(batches) - len(pushed)
    if failed or missing > 0:
        lost = [f"{missing} of {len(batches)} fetch tasks failed outright"] if missing > 0 else []
        lost += [f"{code} ({reason})" for code, reason in sorted(failed.items())]
        raise CollectionFailed(
            f"Not fetched: {'; '.join(lost)}. The codes fetched with them are stored. "
            "Clear the failed fetch tasks (with downstream) to fetch them again."
        )


def report_not_on_venue(code: str, err: KisUnknownCode, day: date, run: Run, venue: Venue) -> None:
    """Information, not a gap: ``venue`` does not trade ``code`` today (KIS answered as for an
    unknown code). Sent once a day: later runs leave the code out (``watchlist_batches``)."""
    send_alert(
        Alert(
            kind=NOT_ON_VENUE,
            message=f"{code} is not traded on {venue.label} ({err.msg_cd}: {err.msg1}); left out there for the rest of {day}",
            trading_date=day,
            dag_id=run.dag_id,
            run_id=run.run_id,
            stock_code=code,
            venue=venue.value,
            details={"msg_cd": err.msg_cd, "msg1": err.msg1},
        )
    )


def alert_unknown_code(code: str, err: KisUnknownCode, day: date, run: Run) -> None:
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


def log_rejects(code: str, rejected: Sequence[Any]) -> None:
    for reject in rejected:
        log.warning("%s: rejected row (%s): %s", code, reject.reason, dict(reject.row))
