"""One function per KIS Open API endpoint the collector calls: what it sends, what it returns.

Each function names its tr_id and the page of the KIS developer portal (and of the official samples,
koreainvestment/open-trading-api ``examples_llm/domestic_stock/``) that specifies it; the facts
and their sources are in docs/kis-api.md. Parameters are typed (a venue goes out as its market
code, :data:`MARKETS`); answers come back parsed (:mod:`kis.parsing` maps KIS's field names to
ours). Paging and the day walk are the hook's (:class:`kis.hook.KisHook`), transport, tokens and
retries the client's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from kis.bar import Bar
from kis.errors import UNKNOWN_CODE, KisApiError, KisResponseError, KisTokenError, KisUnknownCode
from kis.parsing import RejectedRow, day_volume, parse_int, parse_rows, row_minute
from kis.token_store import IssuedToken
from kis.venues import Venue

if TYPE_CHECKING:
    from kis.client import KisClient

log = logging.getLogger(__name__)

TOKEN_PATH = "/oauth2/tokenP"
TODAY_MINUTES_PATH = "/uapi/domestic-stock/v1/quotations/inquire-time-itemchartprice"
TODAY_MINUTES_TR_ID = "FHKST03010200"
TODAY_MINUTES_PAGE_ROWS = 30
PAST_MINUTES_PATH = "/uapi/domestic-stock/v1/quotations/inquire-time-dailychartprice"
PAST_MINUTES_TR_ID = "FHKST03010230"
PAST_MINUTES_PAGE_ROWS = 120
DAILY_PRICES_PATH = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
DAILY_PRICES_TR_ID = "FHKST03010100"


class Market(StrEnum):
    """``FID_COND_MRKT_DIV_CODE``: which venue's trades a quotation covers."""

    KRX = "J"
    NEXTRADE = "NX"
    UNIFIED = "UN"  # KRX and Nextrade together


#: The market code KIS serves each venue's quotations under (docs/kis-api.md, "Market codes").
MARKETS = {Venue.KRX: Market.KRX, Venue.NEXTRADE: Market.NEXTRADE, Venue.UNIFIED: Market.UNIFIED}


@dataclass
class MinutePage:
    """One page of a minute-bar endpoint, parsed.

    :param bars: the valid rows of the asked day, in the order served (newest first).
    :param rejected: the rows that are not bars of that day, each with its reason.
    :param rows: how many rows the page had (a short page ends a walk).
    :param oldest: the oldest minute of any row whose date and time parse: the next cursor.
    :param day_volume: ``output1.acml_vol`` where the endpoint reports the day (today's only).
    """

    bars: list[Bar] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    rows: int = 0
    oldest: datetime | None = None
    day_volume: int | None = None


def issue_token(client: KisClient) -> IssuedToken:
    """``POST /oauth2/tokenP`` (접근토큰발급): a token for the app key, about 24 h.

    KIS issues at most one a minute per app key (EGW00133) and messages the account holder on each
    issue: only the token store calls this.
    """
    s = client.settings
    payload = {"grant_type": "client_credentials", "appkey": s.app_key, "appsecret": s.app_secret}
    status, body = client.post(TOKEN_PATH, payload)
    token, expires_in = body.get("access_token"), parse_int(str(body.get("expires_in", "")))
    if not isinstance(token, str) or not token or not expires_in:
        raise KisTokenError(str(body.get("error_code") or "NOTOKEN"), "the token endpoint answered without a token", status)
    return IssuedToken(access_token=token, expires_in=float(expires_in))


def today_minute_bars(client: KisClient, code: str, *, day: date, until: time, venue: Venue = Venue.KRX) -> MinutePage:
    """FHKST03010200 (주식당일분봉조회), today's minute bars: at most 30 rows, newest first, ending at
    and including ``until``.

    KIS serves the current day of its own clock whatever the caller means, so ``day`` is what the
    caller expects: a row of another day is rejected, never stored under the wrong date.
    """
    params = {
        "FID_ETC_CLS_CODE": "",
        "FID_COND_MRKT_DIV_CODE": MARKETS[venue].value,
        "FID_INPUT_ISCD": code,
        "FID_INPUT_HOUR_1": until.strftime("%H%M%S"),
        "FID_PW_DATA_INCU_YN": "Y",
    }
    body = _data(client, TODAY_MINUTES_PATH, TODAY_MINUTES_TR_ID, params, code)
    page = _minute_page(body, code, day)
    page.day_volume = parse_int((body.get("output1") or {}).get("acml_vol"))
    log.debug("%s %s at %s: %s rows", code, TODAY_MINUTES_TR_ID, params["FID_INPUT_HOUR_1"], page.rows)
    return page


def past_minute_bars(client: KisClient, code: str, *, day: date, until: time, venue: Venue = Venue.KRX) -> MinutePage:
    """FHKST03010230 (주식일별분봉조회), a past day's minute bars, real accounts only: at most 120
    rows, newest first, ending at and including ``until`` of ``day``.

    Minutes without trades are left out, and rows of the previous session fill a page that reaches
    past the open: they are rejected as rows of another day. ``output1`` is today's quote, not the
    asked day's, so this page has no day volume (see :func:`day_volume_of`).
    """
    params = {
        "FID_COND_MRKT_DIV_CODE": MARKETS[venue].value,
        "FID_INPUT_ISCD": code,
        "FID_INPUT_DATE_1": day.strftime("%Y%m%d"),
        "FID_INPUT_HOUR_1": until.strftime("%H%M%S"),
        "FID_PW_DATA_INCU_YN": "N",
        "FID_FAKE_TICK_INCU_YN": "",  # blank, but required
    }
    page = _minute_page(_data(client, PAST_MINUTES_PATH, PAST_MINUTES_TR_ID, params, code), code, day)
    log.debug("%s %s at %s %s: %s rows", code, PAST_MINUTES_TR_ID, params["FID_INPUT_DATE_1"], params["FID_INPUT_HOUR_1"], page.rows)
    return page


def day_volume_of(client: KisClient, code: str, *, day: date, venue: Venue = Venue.KRX) -> int | None:
    """FHKST03010100 (국내주식기간별시세), the daily row of ``day``: its ``acml_vol``, or None when
    KIS has no row of that day.

    Original prices (``FID_ORG_ADJ_PRC=1``), not adjusted (0): an adjusted history rescales the
    volumes of the days before a split, which would then no longer compare with the minute volumes,
    which are as traded.
    """
    yyyymmdd = day.strftime("%Y%m%d")
    params = {
        "FID_COND_MRKT_DIV_CODE": MARKETS[venue].value,
        "FID_INPUT_ISCD": code,
        "FID_INPUT_DATE_1": yyyymmdd,
        "FID_INPUT_DATE_2": yyyymmdd,
        "FID_PERIOD_DIV_CODE": "D",
        "FID_ORG_ADJ_PRC": "1",
    }
    rows = _data(client, DAILY_PRICES_PATH, DAILY_PRICES_TR_ID, params, code).get("output2") or []
    volume = day_volume(rows, day)
    if volume is None:
        log.warning("%s %s: no day volume from KIS (%s rows)", code, day, len(rows))
    return volume


def _data(client: KisClient, path: str, tr_id: str, params: dict[str, str], code: str) -> dict[str, Any]:
    """The body of a quotation call, ``{}`` for KIS's "no data" (rt_cd 7); raises on the others."""
    body = client.get(path, tr_id, params)
    rt_cd, msg_cd, msg1 = body.get("rt_cd"), str(body.get("msg_cd", "")), str(body.get("msg1", ""))
    if rt_cd == "7":
        return {}
    if rt_cd != "0":
        raise KisUnknownCode(code, msg_cd, msg1, 200) if msg_cd in UNKNOWN_CODE else KisApiError(msg_cd, msg1, 200)
    rows, summary = body.get("output2"), body.get("output1") or {}
    if not isinstance(rows, list) or not isinstance(summary, dict):
        raise KisResponseError("MALFORMED", "the response has no output2 rows", 200)
    if not rows and summary.get("stck_prpr") == "0":
        # The other reported shape of an unknown code: a quote of price 0 and no rows.
        raise KisUnknownCode(code, msg_cd, "no quote for this code (price 0)", 200)
    return body


def _minute_page(body: dict[str, Any], code: str, day: date) -> MinutePage:
    rows = body.get("output2") or []
    parsed = parse_rows(rows, code=code, day=day)
    minutes = [m for m in map(row_minute, rows) if m is not None]
    return MinutePage(bars=parsed.bars, rejected=parsed.rejected, rows=len(rows), oldest=min(minutes, default=None))
