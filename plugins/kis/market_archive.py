"""The tasks of ``kis_market_archive``: every code of the day's universe, its whole day on each
venue, stored and verified by the fetch task that fetched it.

The backfill's day (:mod:`kis.minute_backfill`), for the universe (:mod:`kis.universe`) instead of
the watch-list, sized for thousands of codes: each mapped task upserts its batch in one statement
and verifies its codes itself, so the bars never travel through XCom (a task's XCom is its counts)
and a task killed mid-run loses nothing it stored. What is verified stays settled: a re-run of the
day, a retry or ``airflow backfill create`` over a year fetches only the codes not settled yet
(archive_codes.sql). The last task judges each venue's day whole and announces it on its Asset.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from kis import app_keys, code_alerts, storage, task_context, verification
from kis import batches as batching
from kis.archive_scope import UNIVERSE_VARIABLE, UniverseSelection
from kis.assets import announce_archived_days
from kis.batches import LeftOut
from kis.minute_backfill import BackfillDay
from kis.resources import load_sql
from kis.task_context import CollectionFailed, Run
from kis.venues import Venue

log = logging.getLogger(__name__)

CODES_PER_TASK_VARIABLE = "kis_archive_codes_per_task"
DEFAULT_CODES_PER_TASK = 50
# How many codes a failure or a log line names; the rest are counted.
NAMED_CODES = 20


def selection() -> UniverseSelection:
    """The Variable ``kis_archive_universe``; a bad value fails the task, naming the Variable."""
    try:
        return UniverseSelection.parse(task_context.variable(UNIVERSE_VARIABLE))
    except ValueError as err:
        raise CollectionFailed(str(err)) from None


def archive_day(dag_run: Any, params: dict[str, Any]) -> BackfillDay:
    """The run's day (its ``date`` parameter, or its own date) and the venues of ``kis_venues``."""
    return BackfillDay.of(dag_run, params, covers=tuple(Venue))


@dataclass(frozen=True)
class ArchiveCodes:
    """The codes the archive of a day covers on each venue (archive_codes.sql)."""

    universe_day: date
    codes: dict[Venue, list[str]]
    settled: dict[Venue, frozenset[str]]
    halted: frozenset[str]

    @classmethod
    def read(cls, conn: Any, day: date, venues: Sequence[Venue], chosen: UniverseSelection) -> ArchiveCodes:
        """One statement; fails when no universe is loaded on or after ``day``."""
        params = {"day": day, "venues": [venue.value for venue in venues], **chosen.params()}
        rows = conn.execute(load_sql("archive_codes"), params).fetchall()
        universe_day = rows[0][0] if rows else None
        if universe_day is None:
            raise CollectionFailed(
                f"No universe is loaded on or after {day}: run kis_universe first (it records the listed "
                "codes of its own day; a past day takes the first loaded universe after it)"
            )
        codes: dict[Venue, list[str]] = {venue: [] for venue in venues}
        settled: dict[Venue, set[str]] = {venue: set() for venue in venues}
        halted = set()
        for _, venue_value, code, is_halted, is_settled in rows:
            if code is None:  # the universe selected no code
                continue
            venue = Venue(venue_value)
            codes[venue].append(code)
            if is_settled:
                settled[venue].add(code)
            if is_halted:
                halted.add(code)
        return cls(universe_day, codes, {v: frozenset(c) for v, c in settled.items()}, frozenset(halted))

    def expected(self, venue: Venue, left: LeftOut) -> list[str]:
        """The codes whose day on ``venue`` the archive verifies: not those KIS does not know, nor
        those the venue does not trade (alerted, as in the backfill)."""
        left_out = left.codes(venue)
        return [code for code in self.codes[venue] if code not in left_out]

    def pending(self, venue: Venue, left: LeftOut) -> list[str]:
        return [code for code in self.expected(venue, left) if code not in self.settled[venue]]


def plan_archive(target: BackfillDay) -> list[dict[str, Any]]:
    """The batches of codes still to archive, each with its venue, app keys and its halted codes;
    empty (the run skips) when no venue of the run trades that day or every code is settled."""
    if not target.sessions:
        venues = ", ".join(v.label for v in target.venues)
        log.info("%s has no session of %s: nothing to archive", target.day, venues)
        return []
    chosen = selection()
    with task_context.prepared_market_db(target.day) as conn:
        archive = ArchiveCodes.read(conn, target.day, list(target.sessions), chosen)
        left = LeftOut.read(conn, target.day)
    if archive.universe_day != target.day:
        log.warning(
            "No universe of %s is loaded: the codes of %s's, without those listed later (the codes "
            "delisted before %s are not archived)", target.day, archive.universe_day, archive.universe_day,
        )
    pending = {venue: archive.pending(venue, left) for venue in target.sessions}
    for venue in target.sessions:
        log.info(
            "%s on %s: %d codes of the universe %s, %d archived already, %d to fetch",
            target.day, venue.label, len(archive.codes[venue]), chosen.params(),
            len(archive.settled[venue]), len(pending[venue]),
        )
    if not any(pending.values()):
        log.info("Every code of %s is archived already: nothing to fetch", target.day)
        return []
    per_task = int(task_context.variable(CODES_PER_TASK_VARIABLE, str(DEFAULT_CODES_PER_TASK)))
    batches = app_keys.hand_out(pending, app_keys.paced_rates(batching.usable_connections(left)), per_task)
    _check_map_length(len(batches), per_task)
    for batch in batches:
        batch["halted"] = sorted(archive.halted.intersection(batch["codes"]))
    return batches


def _check_map_length(tasks: int, per_task: int) -> None:
    from airflow.configuration import conf

    limit = conf.getint("core", "max_map_length")
    if tasks > limit:
        raise CollectionFailed(
            f"{tasks} fetch tasks of {per_task} codes exceed Airflow's max_map_length {limit}: "
            f"raise {CODES_PER_TASK_VARIABLE}"
        )


def archive_batch(
    codes: Sequence[str],
    venue: Venue,
    target: BackfillDay,
    run: Run,
    *,
    conn_ids: Sequence[str] | None = None,
    halted: Sequence[str] = (),
    ti: Any | None = None,
) -> dict[str, Any]:
    """Fetches the day of each code of the batch not settled yet (hook ``session_bars``: the
    endpoint KIS's clock calls for), upserts them in one statement and verifies them, committed
    before the task ends. Returns counts only (the task's XCom, bounded whatever the batch's bars).

    A code that failed is not verified and stays pending for a retry or a re-run; the others are
    stored and verified first, then the task fails as the backfill's fetch does
    (:meth:`kis.batches.FetchedCodes.raise_failures`), its counts pushed. A code without a bar
    whose day volume KIS reports as 0, or halted all day per the universe and without a volume,
    traded nothing: its day is explained, not ``no_data``.
    """
    session = target.session(venue)
    with task_context.market_db() as conn:
        settled = storage.settled_codes(conn, target.day, venue.value, codes)
    todo = [code for code in codes if code not in settled]
    batch = batching.fetch_codes(
        todo, lambda hook, code: hook.session_bars(code, session), day=target.day, run=run, venue=venue,
        conn_ids=conn_ids, ti=ti,
    )
    counts: dict[str, Any] = {
        "venue": venue.value, "codes": len(codes), "settled_before": len(settled),
        "fetched": len(batch.fetched),
        "failed": len(batch.failed), "pages": sum(result.pages for result in batch.fetched.values()),
    }
    if batch.fetched:
        counts |= _store(batch, venue, target, run, halted)
    log.info("%s on %s: %s", target.day, venue.label, counts)
    if not batch.failed:
        return counts
    if ti is not None:
        ti.xcom_push("return_value", counts)
    batch.raise_failures(todo, day=target.day, run=run, venue=venue, ti=ti)


def _store(
    batch: batching.FetchedCodes, venue: Venue, target: BackfillDay, run: Run, halted: Sequence[str]
) -> dict[str, Any]:
    """Upserts and verifies the codes fetched, each committed: the upsert's counts and the statuses."""
    session = target.session(venue)
    volumes = batch.volumes()
    untraded = [
        code for code in batch.fetched if volumes.get(code) == 0 or (code in halted and code not in volumes)
    ]
    with task_context.market_db() as conn:
        upserted = storage.upsert_bars(
            conn, (bar for result in batch.fetched.values() for bar in result.bars), venue=venue.value
        )
        conn.commit()
        report = storage.verify_day(
            conn, target.day, session.bar_minutes, list(batch.fetched), volumes, run_id=run.run_id,
            venue=venue.value, closing=session.closing_bar, untraded=untraded,
        )
        conn.commit()
        fetched = [{"venue": venue.value, "fetched": list(batch.fetched)}]
        code_alerts.resolve_fetch_alerts(conn, fetched, target.day, run)
        conn.commit()
    return {
        "bars": upserted.received, "inserted": upserted.inserted, "updated": upserted.updated,
        "statuses": dict(Counter(row.status for row in report)),
    }


def close_day(target: BackfillDay, outlet_events: Any = None) -> dict[str, Any]:
    """Judges each venue's archived day whole, from what the fetch tasks verified (and earlier runs
    settled): the day passes when every code of the universe is verified and its completeness
    reaches ``kis_completeness_threshold``. Announces each passed day on its ``MARKET_ARCHIVE``
    Asset; fails naming what is missing otherwise (a re-run fetches only that). Returns counts.

    A fetch task that failed left its codes unverified, which fails the day here; a code KIS does
    not know (alerted) is left out, as in the backfill."""
    threshold = float(task_context.variable("kis_completeness_threshold", "0.98"))
    with task_context.market_db() as conn:
        archive = ArchiveCodes.read(conn, target.day, list(target.sessions), selection())
        left = LeftOut.read(conn, target.day)
        expected = {venue: archive.expected(venue, left) for venue in target.sessions}
        reports = {
            venue: storage.stored_verification(conn, target.day, venue.value, codes)
            for venue, codes in expected.items()
        }
    days, problems, summary = [], [], {}
    for venue, codes in expected.items():
        day = verification.outcome(target.day, reports[venue], threshold, venue=venue)
        unverified = sorted(set(codes) - set(day.stock_codes))
        summary[venue.value] = {
            "codes": len(codes), "verified": day.codes, "not_verified": len(unverified),
            "completeness": round(day.completeness, 5), "passed": day.passed and not unverified,
            "codes_with_gaps": len(day.codes_with_gaps), "no_data": len(day.codes_without_data),
            "unverifiable": len(day.unverifiable),
        }
        log.info("The archive of %s on %s: %s", target.day, venue.label, summary[venue.value])
        if unverified:
            problems.append(f"{venue.label}: {len(unverified)} codes not archived ({_named(unverified)})")
        if not day.passed:
            problems.append(
                f"{venue.label}: {verification.percent(day.completeness)} of the expected bars (threshold "
                f"{verification.percent(threshold)}), codes with gaps {_named(day.codes_with_gaps)}, "
                f"without data {_named(day.codes_without_data)}"
            )
        elif not unverified:
            days.append(day)
    if problems:
        raise CollectionFailed(
            f"The archive of {target.day} is not complete: {'; '.join(problems)}. What is stored and "
            "verified stays: trigger the day again, it fetches only the rest"
        )
    if outlet_events is not None:
        announce_archived_days(outlet_events, days)
    return summary


def _named(codes: Sequence[str]) -> str:
    shown = ", ".join(codes[:NAMED_CODES]) or "none"
    return shown + (f" and {len(codes) - NAMED_CODES} more" if len(codes) > NAMED_CODES else "")
