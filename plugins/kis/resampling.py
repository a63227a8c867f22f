"""The tasks of ``kis_resampled_bars``: the 5/10/30/60-minute bars of each day the backfill verified.

The DAG runs on the events of the venue Assets (:mod:`kis.assets`); each event's extra names a day
and venue, and the day is materialized into ``stock_prices_resampled`` whole, replacing what an
earlier run wrote (migration 013's ``materialize_resampled_bars``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from kis import assets, storage, task_context
from kis.task_context import CollectionFailed, Run
from kis.venues import Venue

log = logging.getLogger(__name__)

#: The label of a mapped task in the grid: its venue and day.
DAY_LABEL = "{{ task.op_kwargs['venue'] }} {{ task.op_kwargs['day'] }}"


def plan_days(triggering_asset_events: Mapping[Any, Sequence[Any]]) -> list[dict[str, Any]]:
    """The days and venues the run's events announced, once each (the mapped task's arguments); a
    run without events (triggered by hand) has none, and says how to get one. An event without a
    valid day fails the task at once (no retry), before anything is written."""
    # An event that came through an alias is listed under the alias too: read the Assets' lists only.
    events = sorted(
        (event for asset in assets.MINUTE_BARS.values() for event in triggering_asset_events.get(asset, ())),
        key=lambda event: event.timestamp,
    )
    try:
        days = assets.verified_days(events)
    except ValueError as err:  # no retry mends an event: it fails once, changing nothing
        raise CollectionFailed(f"{err}. Nothing was materialized.") from None
    if not days:
        log.info(
            "No asset event triggered this run: nothing to materialize. Create an event on an Asset of "
            "%s with the extra {\"date\": \"YYYY-MM-DD\", \"venue\": ...} to materialize a day by hand.",
            ", ".join(asset.name for asset in assets.MINUTE_BARS.values()),
        )
    for day in days:
        log.info("%s on %s: %s", day.day, day.venue.label, f"{len(day.codes)} codes" if day.codes else "every code stored")
    return [day.as_kwargs() for day in days]


def materialize_day(day: str, venue: str, codes: Sequence[str] | None, run: Run) -> int:
    """Replaces the resampled bars of ``day`` on ``venue``; returns the rows written."""
    trading_day, on = date.fromisoformat(day), Venue(venue)
    with task_context.prepared_market_db(trading_day) as conn:
        written = storage.materialize_resampled(conn, trading_day, codes, venue=on, run_id=run.run_id)
    log.info("%s on %s: %d resampled bars (5, 10, 30 and 60 minutes) written", day, on.label, written)
    return written
