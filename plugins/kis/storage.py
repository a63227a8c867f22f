"""Storage of minute bars: thin Python around the statements in ``include/sql``.

Every statement is a file there, so that the DAGs can run the same file with
``SQLExecuteQueryOperator`` (``template_searchpath`` = ``include/``) and Python callers (tests, the
web plugin, scripts) run it here. Values are always bound parameters; the only identifiers built at
run time are partition names, inside the plpgsql functions of the migrations (``format('%I')``) and,
for retention's statements that cannot run in a function, with ``psycopg.sql.Identifier``.

Minutes cross this boundary as naive KST wall-clock timestamps (the column type, see
``docs/storage.md``); aware datetimes are converted to KST here, never by the session TimeZone.
Every function reads or writes one venue (``kis.venues.Venue`` or its value), KRX unless told.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import EllipsisType
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql as pg_sql
from psycopg.rows import class_row

from kis.bar import KST, Bar, bars_by_code
from kis.resources import load_sql
from kis.venues import Venue

if TYPE_CHECKING:
    import pandas

__all__ = [
    "RETENTION_LOCK_TIMEOUT",
    "RETENTION_MONTHS_ENV",
    "RetentionBlocked",
    "DayVerification",
    "IntervalBar",
    "MinuteStatus",
    "UpsertCounts",
    "apply_retention",
    "bars_frame",
    "bars_json",
    "codes_with_closing_bar",
    "ensure_partitions",
    "live_gaps",
    "materialize_resampled",
    "minute_status",
    "record_minute_run",
    "resampled_bars",
    "retention_months",
    "settled_codes",
    "stored_verification",
    "upsert_bars",
    "verify_day",
]

# The retention setting: keep this many whole months before the current one (unset: keep all).
RETENTION_MONTHS_ENV = "KIS_MINUTE_RETENTION_MONTHS"
# The longest retention waits for a lock: readers queued behind its request wait at most this.
RETENTION_LOCK_TIMEOUT = timedelta(seconds=5)


class RetentionBlocked(Exception):
    """Retention waited ``lock_timeout`` for a lock another session holds: retry it later."""


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    """What one upsert did; ``received == duplicates + inserted + updated + unchanged``."""

    received: int
    duplicates: int
    inserted: int
    updated: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class DayVerification:
    """One code's verification of one date, as stored in ``minute_verification``."""

    trading_date: date
    stock_code: str
    venue: str  # krx | nxt | unified
    expected: int
    stored: int  # every bar of the venue's day, in the grid or not
    present: int
    missing_minutes: list[datetime]  # naive KST
    unexpected_minutes: list[datetime]  # naive KST: bars outside the grid and the closing print's window
    closing_bar_at: datetime | None  # naive KST
    volume_sum: int
    reported_volume: int | None
    volume_status: str  # match | exceeds | below | unknown (mismatch in rows before migration 007)
    status: str  # complete | complete_with_explained_absences | unverifiable | gap | no_data
    run_id: str
    checked_at: datetime


@dataclass(frozen=True, slots=True)
class IntervalBar:
    """A bar of ``minute_bars_resampled``: one minute bar, or the minute bars of a bucket."""

    stock_code: str
    venue: str
    bucket_start: datetime  # naive KST: the bar's first minute
    open: int
    high: int
    low: int
    close: int
    volume: int
    bar_count: int  # the minute bars in it


@dataclass(frozen=True, slots=True)
class MinuteStatus:
    """The collection status of a date; ``per_code`` holds one dict per code (see minute_status.sql)."""

    today_total: int
    expected_total: int
    collection_rate: float | None
    stock_count: int
    first_time: datetime | None
    last_time: datetime | None
    per_code: list[dict[str, Any]]


def bars_json(bars: Iterable[Bar], source: str | None = None, venue: str | None = None) -> str:
    """The ``bars`` parameter of upsert_minute_bars.sql: one batch, its bars in transit
    (``kis.bar.bars_by_code``).

    :param source: stored in ``source`` for every bar of the batch (the table's default is KIS).
    :param venue: stored in ``venue`` for every bar of the batch (left out, the statement stores krx).
    """
    batch: dict[str, Any] = {"bars": bars_by_code(bars)}
    if source is not None:
        batch["source"] = source
    if venue is not None:
        batch["venue"] = _venue(venue)
    return json.dumps([batch], separators=(",", ":"))


def upsert_bars(
    conn: psycopg.Connection, bars: Iterable[Bar], *, source: str | None = None, venue: str = Venue.KRX
) -> UpsertCounts:
    """Upserts a batch of one venue in one transaction (a savepoint inside the caller's): all or nothing.

    Partitions the batch needs are created first. A bad bar raises the database's error, whose
    message names the violated constraint (``ck_minute_low_le_open_close_le_high``, ...) and shows
    the failing row; nothing of the batch is stored and nothing stored before is touched.
    """
    params = {"bars": bars_json(bars, source, venue)}
    with conn.transaction():
        conn.execute(load_sql("ensure_minute_partitions"), params)
        with conn.cursor(row_factory=class_row(UpsertCounts)) as cur:
            counts = cur.execute(load_sql("upsert_minute_bars"), params).fetchone()
    assert counts is not None  # an aggregate query always returns its row
    return counts


def ensure_partitions(conn: psycopg.Connection, first_day: date, last_day: date) -> list[str]:
    """Creates the missing monthly partitions covering ``first_day..last_day``; returns their names."""
    rows = conn.execute("SELECT ensure_minute_partitions(%s, %s)", (first_day, last_day)).fetchall()
    return [name for (name,) in rows]


def retention_months(environ: dict[str, str] | None = None) -> int | None:
    """The retention setting ``KIS_MINUTE_RETENTION_MONTHS``; None (keep everything) when unset."""
    value = (os.environ if environ is None else environ).get(RETENTION_MONTHS_ENV, "").strip()
    if not value:
        return None
    months = int(value)
    if months < 1:
        raise ValueError(f"{RETENTION_MONTHS_ENV} must be a whole number of months >= 1, got {value!r}")
    return months


def apply_retention(
    conn: psycopg.Connection,
    keep_months: int,
    *,
    today: date,
    detach_only: bool = False,
    lock_timeout: timedelta = RETENTION_LOCK_TIMEOUT,
) -> list[str]:
    """Drops (or detaches) the monthly partitions older than ``keep_months`` whole months, and
    deletes the resampled bars (``stock_prices_resampled``) of those months.

    With ``keep_months=24`` on 2026-03-15 the current month and the 24 before it are kept
    (2024-03 onwards); 2024-02 and older go. Returns the names of the partitions handled.

    Readers never queue behind an ACCESS EXCLUSIVE lock on the table: each partition is detached
    with ``DETACH PARTITION ... CONCURRENTLY`` (a SHARE UPDATE EXCLUSIVE lock on the table, which
    readers and writers pass; then it waits for the queries that may still read the partition,
    and locks only the partition), and only then dropped, as a table no query of the parent reads.
    Every lock is waited for at most ``lock_timeout``: a session that holds the old month (a long
    read) makes this raise :class:`RetentionBlocked` instead of stalling what queues behind it. An
    interrupted detach stays pending in the catalog; the next call finishes it (``FINALIZE``).

    :param conn: an autocommit connection (``DETACH ... CONCURRENTLY`` cannot run in a transaction).
    :param today: the KST date the retention is computed from (the run's logical date).
    :param detach_only: detach them, to archive with pg_dump, instead of dropping them.
    :param lock_timeout: the longest wait for any lock (PostgreSQL's ``lock_timeout``).
    """
    if keep_months < 1:
        raise ValueError(f"keep_months must be >= 1, got {keep_months}")
    if not conn.autocommit:
        raise ValueError("apply_retention needs an autocommit connection: DETACH CONCURRENTLY cannot run in a transaction")
    month_index = today.year * 12 + today.month - 1 - keep_months
    cutoff = date(month_index // 12, month_index % 12 + 1, 1)
    handled: list[str] = []
    previous = conn.execute("SELECT current_setting('lock_timeout')").fetchone()[0]
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(lock_timeout.total_seconds() * 1000)}ms",))
    try:
        for schema_name, name, pending in conn.execute(load_sql("retention_partitions"), {"older_than": cutoff}).fetchall():
            partition = pg_sql.Identifier(schema_name, name)
            # At most one detach can be pending on the table: finish it before starting another.
            mode = pg_sql.SQL("FINALIZE" if pending else "CONCURRENTLY")
            try:
                conn.execute(
                    pg_sql.SQL("ALTER TABLE stock_prices_minute DETACH PARTITION {} {}").format(partition, mode)
                )
                if not detach_only:
                    conn.execute(pg_sql.SQL("DROP TABLE {}").format(partition))
            except psycopg.errors.LockNotAvailable as err:
                raise RetentionBlocked(
                    f"Retention blocked on {name}: a lock was not granted within {lock_timeout}"
                    f" (a session still reads it); done so far: {', '.join(handled) or 'none'}"
                ) from err
            handled.append(name)
        conn.execute("DELETE FROM alerted_gaps WHERE datetime < %s", (cutoff,))
        # The materialized 5-60-minute bars are the minute bars' derivative: they go with them.
        conn.execute("DELETE FROM stock_prices_resampled WHERE bucket_start < %s", (cutoff,))
    finally:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (previous,))
    return handled


def verify_day(
    conn: psycopg.Connection,
    day: date,
    grid: Sequence[datetime],
    codes: Sequence[str],
    volumes: dict[str, int] | None = None,
    *,
    run_id: str,
    venue: str = Venue.KRX,
    closing: datetime | None | EllipsisType = ...,
    untraded: Sequence[str] = (),
) -> list[DayVerification]:
    """Verifies ``day`` of ``venue`` for ``codes`` against ``grid`` and records it (see verify_day.sql).

    :param grid: the expected bar minutes (``kis.calendar`` ``Session.bar_minutes``).
    :param volumes: the day's cumulative volume per code as reported by the API, when known.
    :param closing: the closing bar (``Session.closing_bar``); None when the venue's day ends without
        one (nxt, unified: then no missing bar makes a gap). Left out: the grid's last minute, as on KRX.
    :param untraded: codes known to have traded nothing that day: without a bar stored, their
        absences are explained, not ``no_data``.
    """
    if closing is ...:
        closing = grid[-1] if grid else None
    params = {
        "day": day,
        "venue": _venue(venue),
        "grid": [_naive_kst(minute) for minute in grid],
        "closing": _naive_kst(closing) if closing is not None else None,
        "codes": list(codes),
        "volumes": json.dumps(volumes) if volumes is not None else None,
        "run_id": run_id,
        "untraded": list(untraded),
    }
    with conn.transaction(), conn.cursor(row_factory=class_row(DayVerification)) as cur:
        return cur.execute(load_sql("verify_day"), params).fetchall()


def stored_verification(conn: psycopg.Connection, day: date, venue: str, codes: Sequence[str]) -> list[DayVerification]:
    """The latest verification of ``day`` on ``venue`` of each of ``codes`` that has one
    (archive_day_verification.sql), in code order."""
    params = {"day": day, "venue": _venue(venue), "codes": list(codes)}
    with conn.cursor(row_factory=class_row(DayVerification)) as cur:
        return cur.execute(load_sql("archive_day_verification"), params).fetchall()


def settled_codes(conn: psycopg.Connection, day: date, venue: str, codes: Sequence[str]) -> set[str]:
    """Which of ``codes`` have their day on ``venue`` settled: verified complete, explained or
    unverifiable (archive_settled_codes.sql)."""
    params = {"day": day, "venue": _venue(venue), "codes": list(codes)}
    return {code for (code,) in conn.execute(load_sql("archive_settled_codes"), params)}


def live_gaps(
    conn: psycopg.Connection,
    codes: Sequence[str],
    minutes: Sequence[datetime],
    *,
    run_id: str,
    venue: str = Venue.KRX,
) -> list[tuple[str, datetime]]:
    """The (code, minute) gaps of ``venue`` among ``minutes`` not alerted before, now marked as alerted."""
    params = {
        "codes": list(codes),
        "venue": _venue(venue),
        "minutes": [_naive_kst(m) for m in minutes],
        "run_id": run_id,
    }
    with conn.transaction():
        return [(code, minute) for code, minute in conn.execute(load_sql("live_gap_check"), params)]


def record_minute_run(conn: psycopg.Connection, day: date, run_at: datetime, *, venue: str = Venue.KRX) -> datetime:
    """Records a minute run of ``day`` on ``venue`` at ``run_at`` (its minute) and returns the
    day's earliest run minute, this one included, naive KST (see record_minute_run.sql)."""
    params = {"day": day, "venue": _venue(venue), "run_at": _naive_kst(run_at)}
    with conn.transaction():
        (first,) = conn.execute(load_sql("record_minute_run"), params).fetchone()
    return first


def codes_with_closing_bar(
    conn: psycopg.Connection, codes: Sequence[str], close: datetime, *, venue: str = Venue.KRX
) -> set[str]:
    """The ``codes`` whose closing bar (labelled ``close`` to five minutes later) is stored on ``venue``."""
    params = {"codes": list(codes), "venue": _venue(venue), "close": _naive_kst(close)}
    return {code for (code,) in conn.execute(load_sql("codes_with_closing_bar"), params)}


def minute_status(
    conn: psycopg.Connection,
    day: date,
    codes: Sequence[str],
    expected_per_code: int,
    *,
    venue: str = Venue.KRX,
) -> MinuteStatus:
    """The seed's minute-status figures for ``day`` on ``venue``, against ``expected_per_code`` bars each."""
    params = {
        "day": day,
        "venue": _venue(venue),
        "codes": list(codes),
        "expected_per_code": expected_per_code,
    }
    with conn.cursor(row_factory=class_row(MinuteStatus)) as cur:
        status = cur.execute(load_sql("minute_status"), params).fetchone()
    assert status is not None
    return status


def resampled_bars(
    conn: psycopg.Connection,
    codes: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    minutes: int = 1,
    venue: str = Venue.KRX,
) -> list[IntervalBar]:
    """The bars of ``codes`` on ``venue`` in ``[start, end)`` resampled to ``minutes`` (1: the
    minute bars themselves), by code and time: ``minute_bars_resampled.sql``, the one resampling
    of the project (buckets from 09:00, labelled by their start; the closing-auction bar is its
    own 15:30 bucket up to 30 minutes and closes the 15:00 bucket at 60)."""
    if minutes < 1:
        raise ValueError(f"minutes must be a whole number of minutes >= 1, got {minutes}")
    params = {
        "bucket": timedelta(minutes=minutes),
        "from_ts": _naive_kst(start),
        "to_ts": _naive_kst(end),
        "codes": list(codes),
        "venue": _venue(venue),
    }
    with conn.cursor(row_factory=class_row(IntervalBar)) as cur:
        return cur.execute(load_sql("minute_bars_resampled"), params).fetchall()


def bars_frame(
    conn: psycopg.Connection,
    codes: str | Sequence[str],
    start: date | datetime,
    end: datetime | None = None,
    *,
    minutes: int = 1,
    venue: str = Venue.KRX,
) -> pandas.DataFrame:
    """The stored bars of ``codes`` on ``venue`` as a DataFrame, for notebooks and downstream DAGs.

    ``bars_frame(conn, "005930", date(2026, 11, 25), minutes=5)`` is one code's day in 5-minute
    bars, indexed by ``minute`` (the bar's start, aware KST); with a list of codes the index is
    ``(stock_code, minute)``. The columns are ``open high low close volume bar_count`` (int64;
    ``bar_count``: the minute bars in the bar). ``minutes`` > 1 resamples as
    :func:`resampled_bars` does, which equals ``pandas.resample`` of the minute bars with
    ``origin`` 09:00, closed and labelled left.

    :param start: the first minute (aware, or naive KST), or a date: that whole day.
    :param end: the end of the range, excluded; left out with a date ``start``.
    """
    import pandas

    if not isinstance(start, datetime):
        if end is not None:
            raise ValueError("end goes with a start minute; a start date means that whole day")
        start = datetime.combine(start, datetime.min.time())
        end = start + timedelta(days=1)
    elif end is None:
        raise ValueError("a start minute needs an end")
    one = isinstance(codes, str)
    rows = resampled_bars(conn, [codes] if one else codes, start, end, minutes=minutes, venue=venue)
    columns = ["open", "high", "low", "close", "volume", "bar_count"]
    frame = pandas.DataFrame(
        [(bar.stock_code, bar.bucket_start, *(getattr(bar, c) for c in columns)) for bar in rows],
        columns=["stock_code", "minute", *columns],
    ).astype({c: "int64" for c in columns})
    frame["minute"] = pandas.to_datetime(frame["minute"]).dt.tz_localize(KST)
    return frame.drop(columns="stock_code").set_index("minute") if one else frame.set_index(["stock_code", "minute"])


def materialize_resampled(
    conn: psycopg.Connection, day: date, codes: Sequence[str] | None, *, venue: str = Venue.KRX, run_id: str
) -> int:
    """Replaces the 5/10/30/60-minute bars of ``day`` on ``venue`` in ``stock_prices_resampled``
    (``materialize_resampled_bars.sql``) in one transaction; ``codes`` None: every code stored
    that day. Returns the rows written."""
    params = {"day": day, "venue": _venue(venue), "codes": None if codes is None else list(codes), "run_id": run_id}
    with conn.transaction():
        (written,) = conn.execute(load_sql("materialize_resampled_bars"), params).fetchone()
    return written


def _venue(venue: str) -> str:
    """The stored name of ``venue``; an unknown one fails here, with the choices, not as a CHECK."""
    try:
        return Venue(venue).value
    except ValueError:
        choices = ", ".join(v.value for v in Venue)
        raise ValueError(f"unknown venue {venue!r}; choose from {choices}") from None


def _naive_kst(moment: datetime) -> datetime:
    """KST wall-clock without a zone, as stored; a naive value is taken to be KST already."""
    return moment.astimezone(KST).replace(tzinfo=None) if moment.tzinfo is not None else moment
