"""The tasks of ``kis_minute_bars``: every minute of the session, the closed bars of the watch-list."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from kis import batches as batching
from kis import code_alerts, storage, task_context
from kis.alerts import Alert, send_alert
from kis.bar import KST
from kis.calendar import ONE_MINUTE, RUN_REACH, default_calendar
from kis.task_context import Run
from kis.venues import Venue
from kis.verification import minutes_text

log = logging.getLogger(__name__)

# A closed minute still missing this long after it closed is a live gap: every run re-reads the
# last 30 minutes, so a minute one run missed is normally healed by the next.
LIVE_GAP_AFTER = timedelta(minutes=2)


def plan_minute_run(run: Run) -> list[dict[str, Any]]:
    """The batches of codes to fetch for the run's minute, each with its venue (``{"venue": ...,
    "codes": [...]}``); empty (the run skips, no request) when no configured venue trades and when
    no bar has closed since the previous tick.

    During KRX's closing auction (15:20-15:30) no KRX bar closes, so those ticks ask nothing of it;
    after the closing bar, the grace ticks ask only for the codes whose closing print is not stored.
    """
    calendar = default_calendar()
    day = run.day
    venues = task_context.configured_venues()
    asked: dict[Venue, datetime | None] = {}  # venue -> the closing bar still awaited, else None
    for venue in venues:
        if not calendar.in_collection_window(run.at, venue):
            continue
        session = calendar.session(day, venue)
        newest = calendar.last_closed_minute(run.at, venue)
        nothing_closed = newest == calendar.last_closed_minute(run.at - ONE_MINUTE, venue)
        if not nothing_closed:
            asked[venue] = None
        elif newest is not None and newest == session.closing_bar:
            asked[venue] = newest
    if not asked:
        log.info(
            "No bar of %s closed at %s KST: skipping without calling KIS",
            ", ".join(venue.label for venue in venues), run.at.astimezone(KST),
        )
        return []
    with task_context.prepared_market_db(day) as conn:
        work = batching.run_work(conn, day, list(asked))
        for venue, closing_bar in asked.items():
            if closing_bar is None:
                continue
            # The closing print's grace minutes: only the codes without their closing bar.
            done = storage.codes_with_closing_bar(conn, work.codes[venue], closing_bar, venue=venue.value)
            log.info("Closing print grace (%s): %d codes have their closing bar stored, not asked again", venue.label, len(done))
            work.codes[venue] = [code for code in work.codes[venue] if code not in done]
        handed_out = work.batches()
        # Recorded before any fetch: the live gap check covers what this run could fetch, even
        # when its own check never runs.
        for venue in {batch["venue"] for batch in handed_out}:
            storage.record_minute_run(conn, day, run.at, venue=venue)
        return handed_out


def fetch_recent_bars(
    codes: Sequence[str],
    run: Run,
    venue: Venue = Venue.KRX,
    *,
    conn_ids: Sequence[str] | None = None,
    ti: Any | None = None,
) -> dict[str, Any]:
    """The closed bars of the last 30 minutes before the run's minute for each code on ``venue``,
    asked with the app key of ``conn_ids[0]`` (the next ones should KIS refuse it):
    ``{"bars": {code: rows}, "venue": ..., "fetched": [...], "failed": {code: reason}}``.

    A code that fails is reported on its own and the others' bars still reach the upsert (see
    :func:`kis.batches.fetch_batch`); an unknown code is alerted once, later runs of the day
    leave it out.
    """
    until = default_calendar().last_closed_minute(run.at, venue)
    if until is None:
        return {"bars": {}, "venue": venue.value, "fetched": [], "failed": {}}
    return batching.fetch_batch(
        codes,
        lambda hook, code: hook.recent_bars(code, until=until, venue=venue),
        day=until.date(),
        run=run,
        venue=venue,
        conn_ids=conn_ids,
        ti=ti,
    )


def check_live_gaps(batches: Sequence[dict[str, Any]], fetched: Sequence[Any], run: Run) -> int:
    """Alerts, once per gap, the closed minutes of each venue still missing ``LIVE_GAP_AFTER`` after
    they closed, and resolves the ``fetch_failed`` alerts of the codes fetched now; then fails when a
    fetch task failed, so the run shows red until that task is cleared.

    Only the minutes some minute run of the day could fetch are checked: from the day's first run
    minus ``RUN_REACH``. The minutes before (a start in the middle of a session) are the backfill's.
    """
    calendar = default_calendar()
    day = run.day
    gaps: list[tuple[Venue, str, datetime]] = []
    with task_context.market_db() as conn:
        for venue in {Venue(batch["venue"]) for batch in batches}:
            session = calendar.session(day, venue)
            horizon = calendar.last_closed_minute(run.at - LIVE_GAP_AFTER, venue) if session else None
            if horizon is None:
                continue
            reach = collection_reach(conn, day, venue, run)
            # The closing bar may print up to five minutes late; the day's verification checks it.
            minutes = [m for m in session.bar_minutes if reach <= m <= horizon and m != session.closing_bar]
            codes = batching.known_codes(batches, day, venue, conn)
            found = storage.live_gaps(conn, codes, minutes, run_id=run.run_id, venue=venue.value)
            gaps += [(venue, code, minute) for code, minute in found]
        code_alerts.resolve_fetch_alerts(conn, fetched, day, run)
    by_code: dict[tuple[Venue, str], list[datetime]] = {}
    for venue, code, minute in gaps:
        by_code.setdefault((venue, code), []).append(minute.replace(tzinfo=KST))
    for (venue, code), missing in sorted(by_code.items()):
        send_alert(
            Alert(
                kind="gap",
                message=(
                    f"{code}{'' if venue is Venue.KRX else f' on {venue.label}'}: {len(missing)} closed minute(s) "
                    f"still missing: {minutes_text(missing)}"
                    " (a VI or a halt also leaves minutes without bars; the backfill's verification decides)"
                ),
                trading_date=day,
                dag_id=run.dag_id,
                run_id=run.run_id,
                stock_code=code,
                venue=venue.value,
                minutes=missing,
            )
        )
    batching.fail_when_fetches_failed(batches, fetched)
    return len(gaps)


def collection_reach(conn: Any, day: date, venue: Venue, run: Run) -> datetime:
    """The first minute some minute run of ``day`` on ``venue`` could fetch: the day's earliest run
    (this one included) minus ``RUN_REACH``. Logs, at the first run, the minutes left to the backfill."""
    first = storage.record_minute_run(conn, day, run.at, venue=venue.value).replace(tzinfo=KST)
    reach = first - RUN_REACH
    session = default_calendar().session(day, venue)
    before = [m for m in session.bar_minutes if m < reach] if session else []
    if before and first == run.at.astimezone(KST):
        log.info(
            "Collection of %s on %s began with the %s run: %s-%s KST are left to the backfill's verification",
            day, venue.label, f"{first:%H:%M}", f"{before[0]:%H:%M}", f"{before[-1]:%H:%M}",
        )
    return reach
