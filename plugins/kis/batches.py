"""A run's watch-list in batches: handed out per venue and app key by the gate, fetched code by
code by each mapped fetch task, and accounted for after the upsert.

One code never takes the others down: each code of a batch is fetched on its own, the codes fetched
reach the upsert even when another code of their batch failed, and the codes KIS does not know (or
a venue does not trade) are alerted once and left out for the rest of the day
(:mod:`kis.code_alerts`). One key never takes the others down either: a batch's codes move to the
next key when KIS refuses its own, which the later runs of the day leave out (:mod:`kis.app_keys`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, NoReturn

from kis import alerts, app_keys, code_alerts, task_context
from kis.app_keys import KEY_REFUSED, EveryKeyRefused, KeyFailover
from kis.bar import bars_by_code
from kis.code_alerts import NOT_ON_VENUE, UNKNOWN_CODE
from kis.errors import KisError, KisUnknownCode, KisUnsupported
from kis.resources import load_sql
from kis.task_context import CollectionFailed, Run
from kis.venues import Venue
from kis.watchlist import load_watchlist

if TYPE_CHECKING:
    from kis.hook import BarsResult, KisHook

log = logging.getLogger(__name__)


class CodesFailed(RuntimeError):
    """Codes of a batch failed for a reason a retry may mend; the others' result is already pushed."""


@dataclass(frozen=True)
class LeftOut:
    """What the alerts of earlier runs leave out of a run: the codes KIS does not know on the day,
    the codes each venue does not trade, and the connections whose app key KIS refused today
    (:func:`kis.app_keys.refusal_day`, whatever day the run collects; until the alert is resolved)."""

    unknown: frozenset[str] = frozenset()
    not_traded: Mapping[str, frozenset[str]] = field(default_factory=dict)  # venue value -> codes
    refused_keys: frozenset[str] = frozenset()

    @classmethod
    def read(cls, conn: Any, day: date) -> LeftOut:
        """One statement, whatever the number of venues and keys."""
        kinds = {"code_kinds": [UNKNOWN_CODE, NOT_ON_VENUE], "key_kind": KEY_REFUSED}
        params = {"day": day, "today": app_keys.refusal_day(), **kinds}
        unknown: set[str] = set()
        not_traded: dict[str, set[str]] = {}
        refused: set[str] = set()
        for kind, venue, code, conn_id in conn.execute(load_sql("left_out_of_runs"), params):
            if kind == KEY_REFUSED:
                refused.add(conn_id)
            elif kind == NOT_ON_VENUE:
                not_traded.setdefault(venue, set()).add(code)
            else:
                unknown.add(code)
        return cls(frozenset(unknown), {v: frozenset(c) for v, c in not_traded.items()}, frozenset(refused))

    def codes(self, venue: Venue) -> frozenset[str]:
        """The codes not asked on ``venue``: unknown, or not traded there."""
        return self.unknown | self.not_traded.get(venue.value, frozenset())


@dataclass
class RunWork:
    """What a run's gate hands out: the codes it asks on each venue, and the connections that ask."""

    codes: dict[Venue, list[str]]
    conn_ids: tuple[str, ...]

    def batches(self) -> list[dict[str, Any]]:
        """``{"venue", "codes", "conn_ids"}`` each (:func:`kis.app_keys.hand_out`), none empty."""
        per_task = int(task_context.variable("kis_codes_per_task", "1"))
        return app_keys.hand_out(self.codes, app_keys.paced_rates(self.conn_ids), per_task)


def run_work(conn: Any, day: date, venues: Sequence[Venue] = (Venue.KRX,)) -> RunWork:
    """The day's watch-list on each venue, without the codes KIS already called unknown on ``day``,
    nor on a venue the codes it does not trade; and the connections of ``kis_connections`` without
    those whose key KIS refused today. Fails, asking nothing, when KIS refused every key."""
    watchlist = load_watchlist(task_context.variable("kis_watchlist"))
    if watchlist.invalid:
        log.warning("Invalid watch-list entries, never sent to KIS: %s", ", ".join(watchlist.invalid))
    left = LeftOut.read(conn, day)
    if left.unknown:
        log.warning("Codes KIS reported unknown today, not asked again: %s", ", ".join(sorted(left.unknown)))
    codes = {}
    for venue in venues:
        not_traded = left.not_traded.get(venue.value)
        if not_traded:
            log.info("Not traded on %s today, not asked again: %s",
                     venue.label, ", ".join(sorted(not_traded)))
        codes[venue] = [code for code in watchlist.codes if code not in left.codes(venue)]
    return RunWork(codes, usable_connections(left))


def usable_connections(left: LeftOut) -> tuple[str, ...]:
    """The connections of ``kis_connections`` without those whose key KIS refused today. Fails,
    asking nothing, when KIS refused every key."""
    configured = app_keys.configured_connections()
    refused = [conn_id for conn_id in configured if conn_id in left.refused_keys]
    if refused:
        log.warning("KIS refused the app keys of %s today: left out", ", ".join(refused))
    if len(refused) == len(configured):
        raise CollectionFailed(app_keys.every_key_refused(refused))
    return tuple(conn_id for conn_id in configured if conn_id not in refused)


def fetch_batch(
    codes: Sequence[str],
    fetch: Callable[[KisHook, str], BarsResult],
    *,
    day: date,
    run: Run,
    venue: Venue = Venue.KRX,
    conn_ids: Sequence[str] | None = None,
    day_volumes: bool = False,
    ti: Any | None = None,
) -> dict[str, Any]:
    """The return value of a mapped fetch task: each code of its batch fetched on its own, so that
    one code never takes the others down.

    ``fetch(hook, code)`` is one code's call of the hook (``KisHook.recent_bars`` or
    ``session_bars``), on the hook of the batch's first connection of ``conn_ids`` (``kis_default``
    when None: a batch handed out before several keys); when KIS refuses that key, or its account
    cannot serve the day, the same code and the rest go on with the next one
    (:class:`kis.app_keys.KeyFailover`).
    The value holds the bars under ``"bars"`` as ``kis.bar.bars_by_code`` lists
    them (the upsert's format: the venue is said once, at the top), with ``day_volumes`` the day
    volume KIS reported for each code under ``"volumes"`` (the verification's evidence), and
    ``"venue"``, ``"fetched"`` and ``"failed"`` (code: reason). An unknown code is alerted at once (a
    retry of the task neither asks nor alerts it again); on Nextrade the same answer means Nextrade
    does not trade the code: it is reported once, as information, and left out. Any other
    ``KisError`` is recorded with its reason. When a code failed, the value is pushed as the task's
    ``return_value`` XCom and the task raises: Airflow keeps the XCom of a failed try (it clears it
    when the next try starts), and the upsert, which pulls the XComs of every mapped fetch, stores
    the other codes. ``CollectionFailed`` (no retry) when every failed code is unknown or KIS
    refused every key, else ``CodesFailed``, retried by Airflow; on the last try each code that
    still failed is alerted (``fetch_failed``), so a code is alerted once whatever the number of tries.
    """
    batch = fetch_codes(codes, fetch, day=day, run=run, venue=venue, conn_ids=conn_ids, ti=ti)
    value: dict[str, Any] = {"bars": bars_by_code(bar for result in batch.fetched.values() for bar in result.bars)}
    if day_volumes:
        value["volumes"] = batch.volumes()
    value |= {"venue": venue.value, "fetched": list(batch.fetched), "failed": batch.failed}
    if not batch.failed:
        return value
    if ti is not None:
        ti.xcom_push("return_value", value)
    batch.raise_failures(codes, day=day, run=run, venue=venue, ti=ti)


@dataclass
class FetchedCodes:
    """What fetching a batch's codes one by one gave: each code's result, the codes that failed
    (code: reason), those KIS called unknown, and the refusal of every key when it came."""

    fetched: dict[str, BarsResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)
    no_key: EveryKeyRefused | None = None

    def volumes(self) -> dict[str, int]:
        """The day volume KIS reported for each code fetched (the verification's evidence)."""
        return {code: r.cumulative_volume for code, r in self.fetched.items() if r.cumulative_volume is not None}

    def raise_failures(
        self, codes: Sequence[str], *, day: date, run: Run, venue: Venue, ti: Any | None
    ) -> NoReturn:
        """Fails the task for the codes that failed (see :func:`fetch_batch`): ``CollectionFailed``
        when no retry can mend it, else ``CodesFailed``, each failed code alerted on the last try."""
        failed, fetched, unknown = self.failed, self.fetched, self.unknown
        stored = f"the other {len(fetched)} codes of the batch are stored" if fetched else "no code of the batch was fetched"
        if self.no_key is not None:
            raise CollectionFailed(f"{self.no_key}; {len(failed)} of {len(codes)} codes not fetched, {stored}")
        reasons = "; ".join(f"{code}: {reason}" for code, reason in sorted(failed.items()))
        if set(failed) <= unknown:
            raise CollectionFailed(f"{len(failed)} of {len(codes)} codes failed ({reasons}); {stored}")
        last_try = ti is None or ti.try_number > ti.max_tries
        if last_try:
            for code in sorted(set(failed) - unknown):
                code_alerts.alert_fetch_failed(
                    code, failed[code], day, run, tries=ti.try_number if ti is not None else 1, venue=venue
                )
        raise CodesFailed(
            f"{len(failed)} of {len(codes)} codes failed ({reasons}); {stored}"
            + ("" if last_try else "; retried")
        )


def fetch_codes(
    codes: Sequence[str],
    fetch: Callable[[KisHook, str], BarsResult],
    *,
    day: date,
    run: Run,
    venue: Venue = Venue.KRX,
    conn_ids: Sequence[str] | None = None,
    ti: Any | None = None,
) -> FetchedCodes:
    """Each code of ``codes`` fetched on its own with ``fetch(hook, code)`` on the batch's keys in
    turn (:class:`kis.app_keys.KeyFailover`); what failed is recorded, never raised, but for an
    account that cannot serve the request at all (``CollectionFailed``). See :func:`fetch_batch`."""
    left = LeftOut()
    if ti is not None and ti.try_number > 1:
        with task_context.market_db() as conn:
            left = LeftOut.read(conn, day)
    unknown_before = left.unknown & set(codes)
    batch = FetchedCodes(failed={code: "unknown to KIS (alerted by an earlier try)" for code in unknown_before})
    batch.unknown |= unknown_before
    with KeyFailover(conn_ids or app_keys.DEFAULT_CONNECTIONS, run, refused=left.refused_keys) as keys:
        for code in codes:
            if code in left.codes(venue):
                continue
            if batch.no_key is not None:
                batch.failed[code] = "not asked: KIS refused every app key"
                continue
            try:
                batch.fetched[code] = _fetched(keys.call(fetch, code), venue)
            except KisUnsupported as err:
                # The account cannot serve the request (a past day on a mock account): no code of
                # the batch would succeed, and no retry can change that.
                raise CollectionFailed(str(err)) from None
            except EveryKeyRefused as err:
                batch.no_key = err
                batch.failed[code] = "not asked: KIS refused every app key"
            except KisUnknownCode as err:
                if venue is Venue.NEXTRADE:
                    code_alerts.report_not_on_venue(code, err, day, run, venue)
                    continue
                code_alerts.alert_unknown_code(code, err, day, run)
                batch.unknown.add(code)
                batch.failed[code] = f"unknown to KIS ({err.msg_cd}: {err.msg1})"
            except KisError as err:
                log.error("%s: %s", code, err)
                batch.failed[code] = str(err)
    return batch


def _fetched(result: BarsResult, venue: Venue) -> BarsResult:
    """``result``, its rejected rows and what it holds logged."""
    for reject in result.rejected:
        log.warning("%s: rejected row (%s): %s", result.code, reject.reason, dict(reject.row))
    last = f"{result.bars[-1].minute:%H:%M}" if result.bars else "none"
    log.info(
        "%s %s: %d bars of %s, the last at %s (%d pages, %d rows rejected)",
        venue.value, result.code, len(result.bars), result.day, last, result.pages, len(result.rejected),
    )
    return result


def known_codes(batches: Sequence[Mapping[str, Any]], day: date, venue: Venue, conn: Any = None) -> list[str]:
    """The codes of ``venue``'s batches without those KIS called unknown on ``day`` (maybe in this
    very run; alerted as unknown, never as gaps) and those the venue does not trade."""
    if conn is None:
        with task_context.market_db() as own:
            return known_codes(batches, day, venue, own)
    left_out = alerts.codes_alerted(conn, UNKNOWN_CODE, day) | alerts.codes_alerted(
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
