"""The app keys a run's work is shared across (issue 23).

KIS allows 18 requests/s per app key and offers no more: more throughput takes more accounts, each
with its own app key (docs/kis-api.md, "Rate limit"). The Variable ``kis_connections`` lists their
KIS connections (default ``["kis_default"]``). Each key already has its own token and its own
limiter row, both keyed by the key's hash (:mod:`kis.token_store`, :mod:`kis.rate_limit`), so
sharing the work takes only this: the gates hand each batch the connection ids it uses
(:func:`hand_out`), and a fetch task moves on to the next of them when KIS refuses a key
(:class:`KeyFailover`). A refused key is alerted once a day, naming its connection and never the
key, and the gates leave it out for the rest of the day.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import date, datetime
from itertools import zip_longest
from typing import TYPE_CHECKING, Any, TypeVar

from kis import task_context
from kis.alerts import Alert, send_alert
from kis.bar import KST
from kis.errors import KisError, KisKeyRefused, KisUnsupported
from kis.resources import KIS_CONN_ID
from kis.task_context import CollectionFailed, Run
from kis.venues import Venue

if TYPE_CHECKING:
    from kis.hook import KisHook

log = logging.getLogger(__name__)
T = TypeVar("T")

#: KIS refused a connection's app key or secret: alerted once a day, the connection left out that day.
KEY_REFUSED = "key_refused"
DEFAULT_CONNECTIONS: tuple[str, ...] = (KIS_CONN_ID,)


def parse_connections(raw: str | None) -> tuple[str, ...]:
    """The connection ids of a ``kis_connections`` value: a JSON list such as ``["kis_default",
    "kis_second"]``, in the order given, without repeats; unset or blank is ``["kis_default"]``.
    Raises ``ValueError`` naming what is wrong."""
    if raw is None or not raw.strip():
        return DEFAULT_CONNECTIONS
    try:
        ids = json.loads(raw)
    except ValueError:
        ids = None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i.strip() for i in ids):
        raise ValueError(
            "kis_connections must be a non-empty JSON list of KIS connection ids, "
            f'e.g. ["kis_default", "kis_second"]; got {raw!r}'
        )
    return tuple(dict.fromkeys(i.strip() for i in ids))


def configured_connections() -> tuple[str, ...]:
    """The connections of the Variable ``kis_connections``."""
    return parse_connections(task_context.variable("kis_connections"))


def paced_rates(conn_ids: Sequence[str]) -> dict[str, float]:
    """Each connection's paced rate, the requests/s its hook sends at most (``rate_limit`` ×
    ``rate_limit_safety``), read from the connections. One connection takes all the work, whatever
    its rate: nothing is read."""
    if len(conn_ids) == 1:
        return {conn_ids[0]: 1.0}
    rates = {}
    for conn_id in conn_ids:
        try:
            settings = task_context.kis_hook(conn_id).settings
        except Exception as err:  # noqa: BLE001 - a missing or incomplete connection, named
            raise CollectionFailed(f"The connection {conn_id!r} of kis_connections is not usable: {err}") from err
        rates[conn_id] = settings.paced_rate
    return rates


def hand_out(
    codes: Mapping[Venue, Sequence[str]], rates: Mapping[str, float], per_task: int
) -> list[dict[str, Any]]:
    """The batches of a run, ``{"venue", "codes", "conn_ids"}`` each: every venue's codes shared
    across the connections in proportion to their ``rates`` (a key paced at twice another's asks
    twice its codes; equal keys ask as many, give or take one), then cut into batches of
    ``per_task`` codes. ``conn_ids`` is the batch's own connection first, then the others in turn,
    which take its codes should KIS refuse its key. The batches alternate between the keys, so that
    the first fetch tasks the pool lets run use every key."""
    if per_task < 1:
        raise ValueError(f"kis_codes_per_task must be at least 1, got {per_task}")
    keys = list(rates)
    asked = dict.fromkeys(keys, 0)
    cuts: dict[str, list[tuple[Venue, list[str]]]] = {key: [] for key in keys}
    for venue, venue_codes in codes.items():
        shares: dict[str, list[str]] = {key: [] for key in keys}
        for code in venue_codes:
            # The key whose share, with this code, stays the smallest against its rate; ties go to
            # the key listed first, so the hand-out is the same at every run.
            key = min(keys, key=lambda k: (asked[k] + 1) / rates[k])
            asked[key] += 1
            shares[key].append(code)
        for key, share in shares.items():
            cuts[key] += [(venue, share[i : i + per_task]) for i in range(0, len(share), per_task)]
    batches = []
    for turn in zip_longest(*cuts.values()):
        for k, cut in enumerate(turn):
            if cut is not None:
                venue, batch = cut
                batches.append({"venue": venue.value, "codes": batch, "conn_ids": keys[k:] + keys[:k]})
    return batches


def every_key_refused(refused: Collection[str]) -> str:
    """The failure of a run that has no key left."""
    return (
        f"KIS refused every app key of kis_connections today ({', '.join(refused)}; each alerted as "
        "key_refused): nothing can be fetched. Fix or replace the keys, then resolve their key_refused "
        "alerts (docs/operations.md, \"App keys\")"
    )


class EveryKeyRefused(KisError):
    """KIS refused every app key a batch could use."""


def refusal_day() -> date:
    """The day a key's refusal holds for: today in KST, whatever day a run collects. A backfill of
    last month meets today's refusal, and is alerted once with today's runs, not once per day it
    collects."""
    return datetime.now(KST).date()


def alert_key_refused(conn_id: str, err: KisKeyRefused, run: Run) -> None:
    """The alert of a refused key, once a day per connection (``collection_alerts`` holds one open
    alert of it a day, migration 019): the connection's id and KIS's answer, never the key."""
    today = refusal_day()
    send_alert(
        Alert(
            kind=KEY_REFUSED,
            message=(
                f"KIS refused the app key of connection {conn_id} ({err.msg_cd}: {err.msg1}): its share "
                f"of the work moves to the other keys of kis_connections, and it is left out for the rest "
                f"of {today}. Fix or replace the key, then resolve this alert to use it again today"
            ),
            trading_date=today,
            dag_id=run.dag_id,
            run_id=run.run_id,
            details={"conn_id": conn_id, "msg_cd": err.msg_cd, "msg1": err.msg1},
        )
    )


class KeyFailover:
    """A batch's calls of the hook on its app keys in turn: its own, and whenever KIS refuses the
    key in use, the next of the batch's connections, with the same code (the refused key alerted).
    One hook at a time, made at the first call; use it as a context manager.

    :param conn_ids: the batch's connections, its own first.
    :param refused: connections whose key KIS refused earlier today (an earlier try), not tried.
    """

    def __init__(self, conn_ids: Sequence[str], run: Run, *, refused: Collection[str] = ()) -> None:
        self.run = run
        self._waiting = [conn_id for conn_id in conn_ids if conn_id not in refused]
        self._refused = [conn_id for conn_id in conn_ids if conn_id in refused]
        self._conn_id: str | None = None
        self._hook: KisHook | None = None

    def call(self, fetch: Callable[[KisHook, str], T], code: str) -> T:
        """``fetch(hook, code)`` on the first key KIS does not refuse; :class:`EveryKeyRefused`
        when none is left. A key whose account cannot serve the request (a past day on a mock
        account) hands it to the next key, without an alert; with none left, that reason is raised."""
        unsupported: KisUnsupported | None = None
        while True:
            if self._hook is None:
                if not self._waiting:
                    if unsupported is not None:
                        raise unsupported
                    raise EveryKeyRefused(every_key_refused(self._refused))
                self._conn_id = self._waiting.pop(0)
                self._hook = task_context.kis_hook(self._conn_id)
            try:
                return fetch(self._hook, code)
            except KisKeyRefused as err:
                log.warning("KIS refused the key of %s (%s); %s goes on with the next", self._conn_id, err, code)
                alert_key_refused(self._conn_id, err, self.run)
                self._refused.append(self._conn_id)
                self.close()
            except KisUnsupported as err:
                if not self._waiting:
                    raise
                log.info("%s cannot serve %s (%s); the batch goes on with the next key", self._conn_id, code, err)
                unsupported = err
                self.close()

    def close(self) -> None:
        if self._hook is not None:
            self._hook.close()
            self._hook = None

    def __enter__(self) -> KeyFailover:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
