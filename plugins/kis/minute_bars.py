"""The tasks of ``kis_minute_bars``: every minute of the session, the closed bars of the watch-list."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from kis import collection, storage
from kis.alerts import Alert, send_alert
from kis.bars import KST
from kis.calendar import ONE_MINUTE, default_calendar
from kis.collection import Run
from kis.verification import minutes_text

log = logging.getLogger(__name__)

# A closed minute still missing this long after it closed is a live gap: every run re-reads the
# last 30 minutes, so a minute one run missed is normally healed by the next.
LIVE_GAP_AFTER = timedelta(minutes=2)


def minute_run_deadline() -> timedelta:
    """How long after its tick a minute run must be done (``KIS_MINUTE_RUN_DEADLINE_SECONDS``)."""
    return timedelta(seconds=int(os.environ.get("KIS_MINUTE_RUN_DEADLINE_SECONDS", "50")))


def plan_minute_run(run: Run) -> list[list[str]]:
    """The batches of codes to fetch for the run's minute; empty (the run skips, no request) outside
    the session and when no bar has closed since the previous tick.

    During the closing auction (15:20-15:30) no bar closes, so those ticks ask nothing; after the
    closing bar, the grace ticks ask only for the codes whose closing print is not stored yet.
    """
    calendar = default_calendar()
    if not calendar.in_collection_window(run.at):
        log.info("No session to collect at %s KST: skipping without calling KIS", run.at.astimezone(KST))
        return []
    session = calendar.session(run.at.astimezone(KST).date())
    newest = calendar.last_closed_minute(run.at)
    nothing_closed = newest == calendar.last_closed_minute(run.at - ONE_MINUTE)
    if nothing_closed and newest != session.closing_bar:
        log.info("No bar closed since the previous tick (the newest is %s): nothing to fetch", newest.strftime("%H:%M"))
        return []
    with collection.prepared_market_db(session.day) as conn:
        batches = collection.watchlist_batches(conn, session.day)
        if nothing_closed:  # the closing print's grace minutes
            done = storage.codes_with_closing_bar(conn, [code for batch in batches for code in batch], newest)
            log.info("Closing print grace: %d codes have their closing bar stored, not asked again", len(done))
            batches = [left for left in ([c for c in batch if c not in done] for batch in batches) if left]
        return batches


def fetch_recent_bars(codes: Sequence[str], run: Run, *, ti: Any | None = None) -> dict[str, Any]:
    """The closed bars of the last 30 minutes before the run's minute for each code: ``{"bars":
    records, "failed": {code: reason}}``.

    A code that fails is reported on its own and the others' bars still reach the upsert (see
    :func:`kis.collection.fetch_batch`); an unknown code is alerted once, later runs of the day
    leave it out.
    """
    until = default_calendar().last_closed_minute(run.at)
    if until is None:
        return {"bars": [], "failed": {}}

    def fetch(hook: Any, code: str) -> list[dict[str, Any]]:
        result = hook.recent_bars(code, until=until)
        collection.log_rejects(code, result.rejected)
        log.info("%s: %d closed bars up to %s", code, len(result.bars), until.strftime("%H:%M"))
        return [bar.as_record() for bar in result.bars]

    def assemble(fetched: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        return {"bars": [record for records in fetched.values() for record in records]}

    return collection.fetch_batch(codes, fetch, assemble, day=until.date(), run=run, ti=ti)


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
        with collection.market_db() as conn:
            codes = collection.known_codes(batches, session.day, conn)
            gaps = storage.live_gaps(conn, codes, minutes, run_id=run.run_id)
    by_code: dict[str, list[datetime]] = {}
    for code, minute in gaps:
        by_code.setdefault(code, []).append(minute.replace(tzinfo=KST))
    for code, missing in by_code.items():
        send_alert(
            Alert(
                kind="gap",
                message=(
                    f"{code}: {len(missing)} closed minute(s) still missing: {minutes_text(missing)}"
                    " (a VI or a halt also leaves minutes without bars; the backfill's verification decides)"
                ),
                trading_date=session.day,
                dag_id=run.dag_id,
                run_id=run.run_id,
                stock_code=code,
                minutes=missing,
            )
        )
    collection.fail_when_fetches_failed(batches, fetched)
    return len(gaps)
