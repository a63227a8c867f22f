"""A run's watch-list in batches: handed out per venue by the gate, fetched code by code by each
mapped fetch task, and accounted for after the upsert.

One code never takes the others down: each code of a batch is fetched on its own, the codes fetched
reach the upsert even when another code of their batch failed, and the codes KIS does not know (or
a venue does not trade) are alerted once and left out for the rest of the day
(:mod:`kis.code_alerts`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from kis import alerts, code_alerts, task_context
from kis.bar import bars_by_code
from kis.code_alerts import NOT_ON_VENUE, UNKNOWN_CODE
from kis.errors import KisError, KisUnknownCode, KisUnsupported
from kis.task_context import CollectionFailed, Run
from kis.venues import Venue
from kis.watchlist import load_watchlist

if TYPE_CHECKING:
    from kis.hook import BarsResult, KisHook

log = logging.getLogger(__name__)


class CodesFailed(RuntimeError):
    """Codes of a batch failed for a reason a retry may mend; the others' result is already pushed."""


def watchlist_batches(conn, day: date, venues: Sequence[Venue] = (Venue.KRX,)) -> list[dict[str, Any]]:
    """The day's watch-list in batches for each venue, ``{"venue": ..., "codes": [...]}``: without
    the codes KIS already called unknown today, nor on a venue the codes it does not trade."""
    watchlist = load_watchlist(task_context.variable("kis_watchlist"))
    if watchlist.invalid:
        log.warning("Invalid watch-list entries, never sent to KIS: %s", ", ".join(watchlist.invalid))
    unknown = alerts.codes_alerted(conn, UNKNOWN_CODE, day)
    if unknown:
        log.warning("Codes KIS reported unknown today, not asked again: %s", ", ".join(sorted(unknown)))
    per_task = int(task_context.variable("kis_codes_per_task", "1"))
    batches = []
    for venue in venues:
        not_traded = alerts.codes_alerted(conn, NOT_ON_VENUE, day, venue=venue.value)
        if not_traded:
            log.info("Not traded on %s today, not asked again: %s", venue.label, ", ".join(sorted(not_traded)))
        for codes in watchlist.batches(per_task, leaving_out=unknown | not_traded):
            batches.append({"venue": venue.value, "codes": codes})
    return batches


def fetch_batch(
    codes: Sequence[str],
    fetch: Callable[[KisHook, str], BarsResult],
    *,
    day: date,
    run: Run,
    venue: Venue = Venue.KRX,
    day_volumes: bool = False,
    ti: Any | None = None,
) -> dict[str, Any]:
    """The return value of a mapped fetch task: each code of its batch fetched on its own, so that
    one code never takes the others down.

    ``fetch(hook, code)`` is one code's call of the hook (``KisHook.recent_bars`` or
    ``session_bars``). The value holds the bars under ``"bars"`` as ``kis.bar.bars_by_code`` lists
    them (the upsert's format: the venue is said once, at the top), with ``day_volumes`` the day
    volume KIS reported for each code under ``"volumes"`` (the verification's evidence), and
    ``"venue"``, ``"fetched"`` and ``"failed"`` (code: reason). An unknown code is alerted at once (a
    retry of the task neither asks nor alerts it again); on Nextrade the same answer means Nextrade
    does not trade the code: it is reported once, as information, and left out. Any other
    ``KisError`` is recorded with its reason. When a code failed, the value is pushed as the task's
    ``return_value`` XCom and the task raises: Airflow keeps the XCom of a failed try (it clears it
    when the next try starts), and the upsert, which pulls the XComs of every mapped fetch, stores
    the other codes. ``CollectionFailed`` (no retry) when every failed code is unknown, else
    ``CodesFailed``, retried by Airflow; on the last try each code that still failed is alerted
    (``fetch_failed``), so a code is alerted once whatever the number of tries.
    """
    unknown_before: set[str] = set()
    not_traded: set[str] = set()
    if ti is not None and ti.try_number > 1:
        with task_context.market_db() as conn:
            unknown_before = alerts.codes_alerted(conn, UNKNOWN_CODE, day) & set(codes)
            not_traded = alerts.codes_alerted(conn, NOT_ON_VENUE, day, venue=venue.value) & set(codes)
    fetched: dict[str, BarsResult] = {}
    failed = {code: "unknown to KIS (alerted by an earlier try)" for code in unknown_before}
    unknown = set(unknown_before)
    with task_context.kis_hook() as hook:
        for code in codes:
            if code in unknown_before or code in not_traded:
                continue
            try:
                fetched[code] = _fetched(fetch(hook, code), venue)
            except KisUnsupported as err:
                # The account cannot serve the request (a past day on a mock account): no code of
                # the batch would succeed, and no retry can change that.
                raise CollectionFailed(str(err)) from None
            except KisUnknownCode as err:
                if venue is Venue.NEXTRADE:
                    code_alerts.report_not_on_venue(code, err, day, run, venue)
                    continue
                code_alerts.alert_unknown_code(code, err, day, run)
                unknown.add(code)
                failed[code] = f"unknown to KIS ({err.msg_cd}: {err.msg1})"
            except KisError as err:
                log.error("%s: %s", code, err)
                failed[code] = str(err)
    value: dict[str, Any] = {"bars": bars_by_code(bar for result in fetched.values() for bar in result.bars)}
    if day_volumes:
        value["volumes"] = {
            code: result.cumulative_volume for code, result in fetched.items() if result.cumulative_volume is not None
        }
    value |= {"venue": venue.value, "fetched": list(fetched), "failed": failed}
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
            code_alerts.alert_fetch_failed(
                code, failed[code], day, run, tries=ti.try_number if ti is not None else 1, venue=venue
            )
    raise CodesFailed(
        f"{len(failed)} of {len(codes)} codes failed ({reasons}); {stored}"
        + ("" if last_try else "; retried")
    )


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
