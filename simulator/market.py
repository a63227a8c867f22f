"""A deterministic KRX and Nextrade market: the minute bars every (code, date, venue) had, and how they
looked while forming.

Each (seed, code, date) seeds its own random walk through a stable hash (SHA-256, never Python's
per-process ``hash()``), so any day of any code can be generated alone, in any order, in any
process, and always comes out the same. Sessions are the simulator's own (:mod:`simulator.sessions`).

What a day contains:
- prices on the KRX tick grid, around a level per code: the watch-list's codes near their real price
  levels (``PRICE_LEVELS``), any other code between 1,000 and 900,000 KRW;
- U-shaped volumes over the day, a bigger opening bar and a single-price closing-auction bar;
- for illiquid codes a few flat zero-volume minutes (bars of the today endpoint, none of the daily);
- in about one code-day in ten a volatility interruption (VI): two minutes without a bar, then a
  bar that carries the auction print;
- trading halts configured from outside (``halts``): no bars in the window;
- off-session trades (the close-price sessions before and after the regular session and the
  after-hours single-price matches): in the day volume (``acml_vol``), never in a bar;
- splits configured from outside (``splits``): what was traded never changes, only the
  adjusted view of the days before a split does.
VI and halt minutes are the expected absences; the ground truth leaves them out.

Nextrade (venue ``nxt``, KIS's ``NX``) trades the codes of ``nxt_codes`` in its segments of
:mod:`simulator.sessions`: in the main segment it follows KRX's prices at a fraction of KRX's volume, in the
pre- and after-market it walks on its own, thinly. The unified view (``unified``, ``UN``) combines
both venues' trades minute by minute. The assumptions are numbered in docs/kis-api.md (K10-K13).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from kis.bar import KST, Bar
from kis.venues import Venue

from simulator.sessions import Session, Sessions

if TYPE_CHECKING:
    from simulator.listings import Listings

__all__ = [
    "CODE_PATTERN", "Halt", "Market", "OffSessionTrade", "Quote", "Split", "UnpredictedMinutes",
    "default_nextrade_codes", "is_on_tick_grid", "tick_size",
]  # fmt: skip

ONE_MINUTE = timedelta(minutes=1)
DEFAULT_WATCHLIST = Path(__file__).parents[1] / "include" / "watchlist.csv"
# KRX short codes are no longer all digits (0126Z0); an ETN's is Q and six digits (Q500001).
CODE_PATTERN = re.compile(r"^(?:[0-9A-Z]{6}|Q[0-9]{6})$")
# Upper bounds (exclusive) of the KRX price bands and their tick sizes; above the last band: 1,000.
# KRX's tick sizes since 2023-01-25, one table for KOSPI and KOSDAQ (KRX's tick-size reform, as
# reported at the time; the 2,000-5,000 band's 5 won and the 1,000 won above 500,000 are its own).
TICK_BANDS = ((2_000, 1), (5_000, 5), (20_000, 10), (50_000, 50), (200_000, 100), (500_000, 500))
TOP_TICK = 1_000
MIN_START_PRICE, MAX_START_PRICE = 1_000, 900_000
# The default watch-list's approximate price levels (KRW), so that the demo and the dashboard show
# Samsung Electronics near 100,000 won, not at some random 1,077. Source: the levels their KRX
# closing prices were at in November 2025, as publicly quoted, rounded to two significant figures;
# unconfirmed (no market data is reachable from the machine this was written on), and only a
# plausible magnitude is needed: each seed's market starts within LEVEL_SPREAD of the level.
PRICE_LEVELS = {
    "005930": 100_000, "000660": 580_000, "005380": 260_000, "000270": 115_000, "373220": 400_000,
    "402340": 300_000, "207940": 1_100_000, "034020": 75_000, "012450": 900_000, "329180": 550_000,
    "028260": 230_000, "105560": 115_000, "068270": 170_000, "032830": 150_000, "012330": 300_000,
    "042660": 110_000, "009150": 220_000, "035720": 60_000, "035420": 250_000, "055550": 70_000,
    "010130": 800_000, "006800": 20_000, "267260": 550_000, "015760": 40_000, "006400": 300_000,
    "086790": 90_000, "005490": 320_000, "009540": 400_000, "042700": 110_000, "051910": 350_000,
    "034730": 250_000, "316140": 25_000, "298040": 2_000_000, "010140": 25_000, "000810": 480_000,
    "066570": 85_000, "010120": 400_000, "267250": 180_000, "138040": 110_000, "003670": 180_000,
    "086280": 170_000, "096770": 110_000, "272210": 55_000, "000150": 800_000, "024110": 20_000,
    "011200": 22_000, "033780": 140_000, "064350": 200_000, "079550": 450_000, "047810": 100_000,
}  # fmt: skip
LEVEL_SPREAD = 0.1  # a seed's start price lies within about ±10 % of the level
VI_PROBABILITY = 0.1
VI_BLANK_MINUTES = 2
ILLIQUID_SHARE = 0.2
ILLIQUID_NO_TRADE_PROBABILITY = 0.03

# Off-session trading (docs/krx-sessions.md, "Off-session trading"), placed relative to the regular
# session so that a late day (CSAT, the first day of a year) moves it too: pre-market close-price
# 08:30-08:40, after-market close-price 15:40-16:00, single-price after-hours 16:00-18:00 matched
# every 10 minutes (16:10, 16:20, ..., 18:00).
PRE_MARKET = "pre_market_close_price"
AFTER_MARKET = "after_market_close_price"
SINGLE_PRICE = "after_hours_single_price"
PRE_MARKET_WINDOW = (timedelta(minutes=-30), timedelta(minutes=-20))  # from the open
AFTER_MARKET_WINDOW = (timedelta(minutes=10), timedelta(minutes=30))  # from the close
SINGLE_PRICE_MATCHES = tuple(timedelta(minutes=m) for m in range(40, 151, 10))  # from the close
NO_OFF_SESSION_PROBABILITY = 0.25  # code-days without any off-session trade
PRE_MARKET_PROBABILITY, AFTER_MARKET_PROBABILITY, SINGLE_PRICE_MATCH_PROBABILITY = 0.6, 0.8, 0.5

# Nextrade's volumes (invented shares; simulator/README.md). In its main segment a code-day trades
# this fraction of each KRX minute's volume; a pre/after-market minute trades this fraction of an
# average KRX minute, and has no trade at all at these odds.
NXT_MAIN_SHARE = (0.05, 0.25)
NXT_THIN_WEIGHT = (0.005, 0.06)
NXT_THIN_NO_TRADE_PROBABILITY, NXT_THIN_NO_TRADE_PROBABILITY_ILLIQUID = 0.1, 0.6
# Absence reasons of the ground truth.
TRADING_HALT, VOLATILITY_INTERRUPTION, NOT_ON_NEXTRADE = "trading_halt", "volatility_interruption", "not_on_nextrade"
NOT_LISTED = "not_listed"

# Well-known names so that responses look familiar; any other valid code gets a generated name.
NAMES = {
    "005930": "삼성전자",
    "000660": "SK하이닉스",
    "005380": "현대차",
    "000270": "기아",
    "373220": "LG에너지솔루션",
    "035420": "NAVER",
    "035720": "카카오",
    "068270": "셀트리온",
    "105560": "KB금융",
    "051910": "LG화학",
}


def tick_size(price: int | float) -> int:
    """The KRX tick size of the band ``price`` lies in."""
    for bound, tick in TICK_BANDS:
        if price < bound:
            return tick
    return TOP_TICK


def is_on_tick_grid(price: int) -> bool:
    return price > 0 and price % tick_size(price) == 0


def to_tick(price: float) -> int:
    """The nearest price on the tick grid; rounding across a band edge lands on the edge, which is valid."""
    tick = tick_size(price)
    return max(tick, int(round(price / tick)) * tick)


def start_price(code: str, draw: float) -> int:
    """A code's start price on the tick grid from ``draw`` (uniform in [0, 1), the seed's): near its
    level in ``PRICE_LEVELS``, or log-uniform between ``MIN_START_PRICE`` and ``MAX_START_PRICE``
    for a code without one."""
    level = PRICE_LEVELS.get(code)
    if level is not None:
        return to_tick(level * math.exp((2 * draw - 1) * LEVEL_SPREAD))
    return to_tick(math.exp(math.log(MIN_START_PRICE) + draw * (math.log(MAX_START_PRICE) - math.log(MIN_START_PRICE))))


def stable_seed(*parts: object) -> int:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True)
class Halt:
    """A trading halt of one code: no bars from ``start`` (included) to ``end`` (excluded), KST.

    ``day`` None means every day (handy for a simulator whose clock moves across days).
    """

    code: str
    start: time
    end: time
    day: date | None = None

    def covers(self, code: str, minute: datetime) -> bool:
        return (
            code == self.code
            and (self.day is None or minute.date() == self.day)
            and self.start <= minute.astimezone(KST).time() < self.end
        )


@dataclass(frozen=True)
class UnpredictedMinutes:
    """Minutes at which ``venue`` serves a bar of ``code`` though its sessions have none (a test fault:
    the real sessions may differ from the collector's calendar). ``day`` None means every session day."""

    code: str
    venue: Venue  # KRX or NEXTRADE; the unified view shows them through its union
    minutes: frozenset[time]
    day: date | None = None

    def applies(self, code: str, day: date, venue: Venue) -> bool:
        return code == self.code and venue is self.venue and (self.day is None or day == self.day)


@dataclass(frozen=True)
class Split:
    """A split of ``code`` effective on ``day`` (its first session on the new basis).

    ``ratio`` is new shares per old share: 50 for a 1:50 split, 0.2 for a 5:1 consolidation.
    """

    code: str
    day: date
    ratio: float


@dataclass(frozen=True)
class OffSessionTrade:
    """Shares traded outside the regular session at ``at`` (KST): in ``acml_vol``, in no minute bar."""

    at: datetime
    session: str  # PRE_MARKET, AFTER_MARKET or SINGLE_PRICE
    volume: int

    def as_record(self) -> dict[str, str | int]:
        return {"at": self.at.isoformat(), "session": self.session, "volume": self.volume}


@dataclass(frozen=True)
class _Minute:
    """A bar of the generated tape and when, within its minute, its trades happened (seconds)."""

    bar: Bar
    first_trade: int | None  # None: no trade in the minute
    high_at: int
    low_at: int


@dataclass(frozen=True)
class _Tape:
    minutes: tuple[_Minute, ...]
    vi_minutes: tuple[datetime, ...]


@dataclass(frozen=True)
class _Profile:
    start_price: int
    illiquid: bool
    minute_volume: float  # shares in an average minute
    volatility: float  # standard deviation of a minute's log return


@dataclass(frozen=True)
class Quote:
    """What the market shows for a code at one moment of its session day.

    ``rows`` are the bars as the today endpoint shows them, oldest first, each with the day's
    cumulative traded value through it; the last one may be forming.
    """

    rows: tuple[tuple[Bar, int], ...]
    price: int  # last trade price of the bars (KRX's previous close before the first trade)
    volume: int  # the day volume so far (acml_vol): the bars' and KRX's off-session trades' (none on NXT)
    session_volume: int  # the bars' volume so far: what the rows add up to
    value: int  # cumulative traded value of the regular session so far
    previous_close: int


class Market:
    """The deterministic market of one seed.

    :param seed: changes every price and volume; the same seed always gives the same market.
    :param sessions: the sessions it trades in; defaults to :class:`simulator.sessions.Sessions`'s.
    :param halts: trading halts (replaceable later through ``halts``).
    :param splits: splits (replaceable later through ``splits``).
    :param nxt_codes: the codes Nextrade trades (replaceable later); None: the default watch-list's.
    :param listings: which of its codes are listed and halted each day (simulator.listings); a
        code it does not govern, or every code without one, trades every session.
    """

    def __init__(
        self,
        seed: int = 0,
        sessions: Sessions | None = None,
        halts: Iterable[Halt] = (),
        splits: Iterable[Split] = (),
        nxt_codes: Iterable[str] | None = None,
        listings: Listings | None = None,
    ) -> None:
        self.seed = seed
        self.sessions = sessions or Sessions()
        self.halts: tuple[Halt, ...] = tuple(halts)
        self.splits: tuple[Split, ...] = tuple(splits)
        self.nxt_codes: frozenset[str] = default_nextrade_codes() if nxt_codes is None else frozenset(nxt_codes)
        self.unpredicted: tuple[UnpredictedMinutes, ...] = ()
        self.listings = listings
        self._tapes: dict[tuple[str, date, Venue], _Tape] = {}
        self._off_session: dict[tuple[str, date], tuple[OffSessionTrade, ...]] = {}

    def name(self, code: str) -> str:
        listing = self.listings.get(code) if self.listings is not None else None
        return listing.name if listing is not None else NAMES.get(code, f"시뮬종목{code}")

    def is_listed(self, code: str, day: date) -> bool:
        """Whether KRX lists ``code`` on ``day``: a code the listings do not govern always is."""
        return self.listings is None or not self.listings.governs(code) or self.listings.listed(code, day)

    def start_price(self, code: str) -> int:
        """The price the code's days drift around (its master files' base price)."""
        return self._profile(code).start_price

    def _listing_absence(self, code: str, day: date) -> str | None:
        """Why ``code`` trades nothing on ``day`` (not listed, or halted the whole day), or None."""
        if not self.is_listed(code, day):
            return NOT_LISTED
        if self.listings is not None and self.listings.halted(code, day):
            return TRADING_HALT
        return None

    def trades_on_nextrade(self, code: str) -> bool:
        return code in self.nxt_codes

    def session(self, code: str, day: date, venue: Venue = Venue.KRX) -> Session | None:
        """The session whose grid ``code`` is served on: the unified view of a code Nextrade does not
        trade is KRX's alone (K13), and Nextrade has none for it."""
        if venue is not Venue.KRX and not self.trades_on_nextrade(code):
            return None if venue is Venue.NEXTRADE else self.sessions.session(day)
        return self.sessions.session(day, venue)

    def day_bars(self, code: str, day: date, venue: Venue = Venue.KRX) -> list[Bar]:
        """The final bars of ``code`` on ``day`` at ``venue``: the ground truth, zero-volume minutes included."""
        if venue is Venue.UNIFIED:
            return [bar for bar, _ in self.quote(code, datetime.combine(day, time(23, 59), tzinfo=KST), venue).rows]
        return [m.bar for m in self._visible(code, day, venue)]

    def session_volume(self, code: str, day: date, venue: Venue = Venue.KRX) -> int:
        """The bars' volume: the sum of the ground truth's bars."""
        return sum(bar.volume for bar in self.day_bars(code, day, venue))

    def cumulative_volume(self, code: str, day: date, at: datetime | None = None, venue: Venue = Venue.KRX) -> int:
        """The day volume (``acml_vol``) as KIS shows it at ``at``; None: once the day is over.

        It counts KRX's off-session trades made by then, so after the close it exceeds the session's
        volume on every code-day that has some. The unified view's is KRX's plus Nextrade's (K12).
        """
        if at is None or at.astimezone(KST).date() > day:
            off_session = sum(t.volume for t in self.off_session_trades(code, day, venue))
            return self.session_volume(code, day, venue) + off_session
        if at.astimezone(KST).date() < day:
            return 0
        return self.quote(code, at, venue).volume

    def off_session_trades(self, code: str, day: date, venue: Venue = Venue.KRX) -> tuple[OffSessionTrade, ...]:
        """KRX's off-session trades of the day in time order (also the unified view's; Nextrade has
        none: its whole day is bars); a halt covering their time removes them too."""
        if venue is Venue.NEXTRADE or self._listing_absence(code, day):
            return ()
        if (code, day) not in self._off_session:
            self._off_session[(code, day)] = self._generate_off_session(code, day)
        trades = self._off_session[(code, day)]
        return tuple(t for t in trades if not any(h.covers(code, t.at) for h in self.halts))

    def split_ratio(self, code: str, after: date, through: date) -> float:
        """The product of the ratios of ``code``'s splits effective after ``after``, up to ``through``."""
        return math.prod(s.ratio for s in self.splits if s.code == code and after < s.day <= through)

    def absences(self, code: str, day: date, venue: Venue = Venue.KRX) -> list[dict[str, str]]:
        """The minutes of ``venue``'s session expected to have no bar, each with its reason, in
        time order."""
        vi = set(self._tape(code, day, Venue.KRX).vi_minutes)
        present = {bar.minute for bar in self.day_bars(code, day, venue)} if venue is not Venue.KRX else set()
        whole_day = self._listing_absence(code, day)
        absent = []
        session = self.sessions.session(day, venue)
        for minute in session.bar_minutes if session else ():
            if minute in present:
                continue
            if whole_day:
                absent.append({"minute": minute.isoformat(), "reason": whole_day})
            elif any(h.covers(code, minute) for h in self.halts):
                absent.append({"minute": minute.isoformat(), "reason": TRADING_HALT})
            elif minute in vi and venue is not Venue.NEXTRADE:
                absent.append({"minute": minute.isoformat(), "reason": VOLATILITY_INTERRUPTION})
            elif venue is not Venue.KRX:
                absent.append({"minute": minute.isoformat(), "reason": NOT_ON_NEXTRADE})
        return absent

    def previous_close(self, code: str, day: date) -> int:
        """The close of the session before ``day`` (the reference price of ``day``)."""
        previous = self._previous_session(code, day)
        return previous[1] if previous else self._profile(code).start_price

    def reference_price(self, code: str, day: date) -> float:
        """The previous close on ``day``'s share basis: KRX re-bases it over a split effective on ``day``."""
        previous = self._previous_session(code, day)
        if previous is None:
            return self._profile(code).start_price
        return previous[1] / self.split_ratio(code, previous[0], day)

    def _previous_session(self, code: str, day: date) -> tuple[date, int] | None:
        """The day and close of the last session before ``day`` with bars (two weeks back at most)."""
        for back in range(1, 15):
            bars = self.day_bars(code, day - timedelta(days=back))
            if bars:
                return bars[-1].minute.date(), bars[-1].close
        return None

    def quote(self, code: str, at: datetime, venue: Venue = Venue.KRX) -> Quote:
        """The day of ``code`` at ``venue`` as seen at ``at``: closed bars final, the bar of ``at``'s
        minute forming.

        Before its first trade (a fixed second within the minute) a forming bar is flat at the last
        price and repeats the previous bar's volume, as KIS shows it; after that it grows towards
        its final values, which it reaches when its minute ends.
        """
        at = at.astimezone(KST)
        day = at.date()
        if venue is Venue.UNIFIED:
            return self._unified_quote(code, at)
        previous_close = self.previous_close(code, day)
        rows: list[tuple[Bar, int]] = []
        price, volume, value, previous_volume = previous_close, 0, 0, 0
        for minute in self._visible(code, day, venue):
            if minute.bar.minute > at:
                break
            if minute.bar.minute + ONE_MINUTE <= at:
                shown, traded = minute.bar, minute.bar
            else:
                second = int((at - minute.bar.minute).total_seconds())
                shown, traded = _forming(minute, second, price, previous_volume)
            if traded is not None:
                price, volume, value = traded.close, volume + traded.volume, value + traded_value(traded)
            rows.append((shown, value))
            previous_volume = minute.bar.volume
        off_session = sum(t.volume for t in self.off_session_trades(code, day, venue) if t.at <= at)
        return Quote(tuple(rows), price, volume + off_session, volume, value, previous_close)

    def _unified_quote(self, code: str, at: datetime) -> Quote:
        """The unified view at ``at``: each minute combines what KRX and Nextrade have traded in it by
        then (open and close from the trades in time order, high the highest, low the lowest, volume
        the sum; K11). A minute nobody has traded in yet is shown as KIS shows a forming bar."""
        day = at.date()
        previous_close = self.previous_close(code, day)
        by_minute: dict[datetime, list[_Minute]] = {}
        for venue in (Venue.KRX, Venue.NEXTRADE):  # KRX first: it wins ties of trade times
            for minute in self._visible(code, day, venue):
                by_minute.setdefault(minute.bar.minute, []).append(minute)
        rows: list[tuple[Bar, int]] = []
        price, volume, value, previous_volume = previous_close, 0, 0, 0
        for start in sorted(by_minute):
            if start > at:
                break
            second = None if start + ONE_MINUTE <= at else int((at - start).total_seconds())
            parts = [part for m in by_minute[start] if (part := _traded_part(m, second)) is not None]
            if parts:
                shown = traded = _combine(code, start, parts)
                price, volume, value = traded.close, volume + traded.volume, value + traded_value(traded)
            else:
                shown = Bar(code, start, price, price, price, price, 0 if second is None else previous_volume)
            rows.append((shown, value))
            previous_volume = sum(m.bar.volume for m in by_minute[start])
        off_session = sum(t.volume for t in self.off_session_trades(code, day) if t.at <= at)
        return Quote(tuple(rows), price, volume + off_session, volume, value, previous_close)

    def _visible(self, code: str, day: date, venue: Venue = Venue.KRX) -> list[_Minute]:
        """The served minutes of one venue (KRX or Nextrade): its tape, the faults' unpredicted
        minutes added, the halted ones left out."""
        if (venue is Venue.NEXTRADE and not self.trades_on_nextrade(code)) or self._listing_absence(code, day):
            return []
        minutes = list(self._tape(code, day, venue).minutes)
        extra = sorted({t for u in self.unpredicted if u.applies(code, day, venue) for t in u.minutes})
        if extra and self.sessions.session(day, venue) is not None:
            minutes = self._with_unpredicted(code, day, venue, minutes, extra)
        return [m for m in minutes if not any(h.covers(code, m.bar.minute) for h in self.halts)]

    def _with_unpredicted(
        self, code: str, day: date, venue: Venue, minutes: list[_Minute], extra: list[time]
    ) -> list[_Minute]:
        """``minutes`` plus a thin traded bar at each of ``extra`` that has none, in time order."""
        present = {m.bar.minute for m in minutes}
        for clock_time in extra:
            start = datetime.combine(day, clock_time, tzinfo=KST)
            if start in present:
                continue
            before = [m for m in minutes if m.bar.minute < start]
            last = before[-1].bar.close if before else self.previous_close(code, day)
            rng = random.Random(stable_seed(self.seed, code, start.isoformat(), venue.value, "unpredicted"))
            bar = _random_bar(rng, code, start, last, self._profile(code), rng.uniform(*NXT_THIN_WEIGHT))
            minutes.append(_timed(rng, bar))
            minutes.sort(key=lambda m: m.bar.minute)
        return minutes

    def _profile(self, code: str) -> _Profile:
        rng = random.Random(stable_seed(self.seed, code))
        start = start_price(code, rng.random())
        illiquid = rng.random() < ILLIQUID_SHARE
        # Turnover (won a minute) sets the share volume, so a 900,000 won stock trades few shares.
        turnover = math.exp(rng.uniform(math.log(5e6), math.log(5e7)) if illiquid else rng.uniform(math.log(1e8), math.log(3e9)))
        return _Profile(start, illiquid, max(turnover / start, 3.0), rng.uniform(0.0006, 0.0018))

    def _tape(self, code: str, day: date, venue: Venue = Venue.KRX) -> _Tape:
        key = (code, day, venue)
        if key not in self._tapes:
            self._tapes[key] = self._generate_nextrade(code, day) if venue is Venue.NEXTRADE else self._generate(code, day)
        return self._tapes[key]

    def _generate(self, code: str, day: date) -> _Tape:
        session = self.sessions.session(day)
        if session is None:
            return _Tape((), ())
        profile = self._profile(code)
        rng = random.Random(stable_seed(self.seed, code, day.isoformat()))
        grid = session.bar_minutes
        continuous = len(grid) - 1
        vi_minutes: tuple[datetime, ...] = ()
        if rng.random() < VI_PROBABILITY:
            start = rng.randrange(10, continuous - 10)
            vi_minutes = grid[start : start + VI_BLANK_MINUTES]
        # The day's open drifts from the code's start price, so days differ but stay plausible.
        last = to_tick(profile.start_price * math.exp(rng.gauss(0, 0.03)))
        minutes = []
        for index, minute in enumerate(grid):
            if minute in vi_minutes:
                continue
            shape = _u_shape(index / continuous)
            # Auction prints (the open, the VI auction, the close) match once, at the minute's start.
            auction = index == 0 or minute == session.closing_print
            if minute == session.closing_print:
                last = to_tick(last * math.exp(rng.gauss(0, profile.volatility)))
                volume = int(profile.minute_volume * rng.uniform(15, 40))
                bar = Bar(code, minute, last, last, last, last, volume)
            elif vi_minutes and minute == vi_minutes[-1] + ONE_MINUTE:
                # The VI auction matches away from the last price: that move is what triggered it.
                auction = True
                last = to_tick(last * (1 + rng.choice((-1, 1)) * rng.uniform(0.02, 0.03)))
                volume = int(profile.minute_volume * shape * rng.uniform(5, 10))
                bar = Bar(code, minute, last, last, last, last, volume)
            elif index > 0 and profile.illiquid and rng.random() < ILLIQUID_NO_TRADE_PROBABILITY:
                minutes.append(_Minute(Bar(code, minute, last, last, last, last, 0), None, 0, 0))
                continue
            else:
                bar = _random_bar(rng, code, minute, last, profile, shape * (5 if index == 0 else 1))
                last = bar.close
            first = 0 if auction else rng.randrange(0, 50)
            minutes.append(_Minute(bar, first, rng.randrange(first, 60), rng.randrange(first, 60)))
        return _Tape(tuple(minutes), vi_minutes)

    def _generate_nextrade(self, code: str, day: date) -> _Tape:
        """A code-day on Nextrade (K10), from an RNG of its own so that KRX's tape never changes with it.

        Main segment: where KRX trades in a minute, Nextrade trades too, within a tick of KRX's prices,
        at a code-day share of KRX's volume; where KRX is in a VI or has no trade, neither has
        Nextrade. Pre- and after-market (and main minutes outside KRX's session, e.g. on the first
        day of a year): a random walk of its own, thin, with no trade in some minutes. The pre-market
        starts near KRX's previous close, the after-market at KRX's closing price. A minute without a
        trade is a zero-volume flat bar, as on KRX (K2).
        """
        session = self.sessions.session(day, Venue.NEXTRADE)
        if session is None:
            return _Tape((), ())
        profile = self._profile(code)
        rng = random.Random(stable_seed(self.seed, code, day.isoformat(), Venue.NEXTRADE.value))
        krx_tape = self._tape(code, day, Venue.KRX)
        krx = {m.bar.minute: m for m in krx_tape.minutes}
        share = rng.uniform(*NXT_MAIN_SHARE)
        no_trade = NXT_THIN_NO_TRADE_PROBABILITY_ILLIQUID if profile.illiquid else NXT_THIN_NO_TRADE_PROBABILITY
        last = to_tick(self.previous_close(code, day) * math.exp(rng.gauss(0, 0.01)))
        minutes = []
        for segment in session.segments:
            if segment.name == "after_market" and krx_tape.minutes:
                last = krx_tape.minutes[-1].bar.close
            main = segment.name == "main"
            for start in segment.bar_minutes:
                krx_minute = krx.get(start)
                bar: Bar | None = None
                if main and krx_minute is not None and krx_minute.first_trade is not None:
                    bar = _tracking_bar(rng, krx_minute.bar, share)
                elif main and (krx_minute is not None or start in krx_tape.vi_minutes):
                    pass  # KRX in a VI or without a trade: no trade here either
                elif rng.random() >= no_trade:
                    bar = _random_bar(rng, code, start, last, profile, rng.uniform(*NXT_THIN_WEIGHT))
                if bar is None:
                    minutes.append(_Minute(Bar(code, start, last, last, last, last, 0), None, 0, 0))
                    continue
                last = bar.close
                minutes.append(_timed(rng, bar))
        return _Tape(tuple(minutes), ())

    def _generate_off_session(self, code: str, day: date) -> tuple[OffSessionTrade, ...]:
        """A code-day's off-session trades, from an RNG of its own so that the bars never change with it.

        Close-price sessions match continuously (a few trades at random seconds of the window);
        the single-price session matches at most once every 10 minutes. Volumes are a fraction of
        an average minute's: off-session trading is thin.
        """
        session = self.sessions.session(day)
        rng = random.Random(stable_seed(self.seed, code, day.isoformat(), "off-session"))
        if session is None or rng.random() < NO_OFF_SESSION_PROBABILITY:
            return ()
        minute_volume = self._profile(code).minute_volume
        trades: list[OffSessionTrade] = []

        def continuous(name: str, start: datetime, end: datetime, count: int) -> None:
            seconds = int((end - start).total_seconds())
            for offset in sorted(rng.randrange(seconds) for _ in range(count)):
                volume = max(1, int(minute_volume * rng.uniform(0.02, 0.5)))
                trades.append(OffSessionTrade(start + timedelta(seconds=offset), name, volume))

        if rng.random() < PRE_MARKET_PROBABILITY:
            start, end = (session.open + edge for edge in PRE_MARKET_WINDOW)
            continuous(PRE_MARKET, start, end, rng.randint(1, 8))
        if rng.random() < AFTER_MARKET_PROBABILITY:
            start, end = (session.closing_print + edge for edge in AFTER_MARKET_WINDOW)
            continuous(AFTER_MARKET, start, end, rng.randint(1, 15))
        for match in SINGLE_PRICE_MATCHES:
            if rng.random() < SINGLE_PRICE_MATCH_PROBABILITY:
                volume = max(1, int(minute_volume * rng.uniform(0.05, 0.8)))
                trades.append(OffSessionTrade(session.closing_print + match, SINGLE_PRICE, volume))
        return tuple(trades)


def traded_value(bar: Bar) -> int:
    """The won traded in a bar, at its average OHLC price (what ``acml_tr_pbmn`` accumulates)."""
    return bar.volume * (bar.open + bar.high + bar.low + bar.close) // 4


def _forming(minute: _Minute, second: int, last_price: int, previous_volume: int) -> tuple[Bar, Bar | None]:
    """A bar ``second`` seconds into its minute: the row shown, and what has really traded (or None)."""
    bar = minute.bar
    if minute.first_trade is None or second < minute.first_trade:
        flat = replace(bar, open=last_price, high=last_price, low=last_price, close=last_price)
        return replace(flat, volume=previous_volume), None
    events = sorted(
        ((minute.first_trade, bar.open), (minute.high_at, bar.high), (minute.low_at, bar.low)),
        key=lambda event: event[0],
    )
    reached = [price for at, price in events if at <= second]
    elapsed = (second - minute.first_trade + 1) / (60 - minute.first_trade)
    partial = replace(
        bar,
        high=max(reached),
        low=min(reached),
        close=reached[-1],
        volume=min(bar.volume, max(1, int(bar.volume * elapsed))),
    )
    return partial, partial


def _timed(rng: random.Random, bar: Bar) -> _Minute:
    """A continuously traded bar with its trade times: the first in the first 50 seconds, the high
    and the low after it."""
    first = rng.randrange(0, 50)
    return _Minute(bar, first, rng.randrange(first, 60), rng.randrange(first, 60))


def _traded_part(minute: _Minute, second: int | None) -> tuple[Bar, int, int] | None:
    """What one venue had traded in ``minute`` by ``second`` (None: the minute is over), with the
    seconds of its first and its last trade; None before its first trade."""
    first = minute.first_trade
    if first is None or (second is not None and second < first):
        return None
    events = (first, minute.high_at, minute.low_at)
    if second is None:
        return minute.bar, first, max(events)
    _, traded = _forming(minute, second, minute.bar.open, 0)
    assert traded is not None  # the first trade has happened
    return traded, first, max(t for t in events if t <= second)


def _combine(code: str, start: datetime, parts: list[tuple[Bar, int, int]]) -> Bar:
    """One bar of the trades of several venues in a minute: ``parts`` are (bar, first, last) each."""
    opening = min(parts, key=lambda part: part[1])  # min and max keep the first of ties: KRX's
    closing = max(parts, key=lambda part: part[2])
    return Bar(
        code,
        start,
        opening[0].open,
        max(part[0].high for part in parts),
        min(part[0].low for part in parts),
        closing[0].close,
        sum(part[0].volume for part in parts),
    )


def _tracking_bar(rng: random.Random, krx: Bar, share: float) -> Bar:
    """Nextrade's bar of a minute KRX traded in: prices within a tick of KRX's (arbitrage keeps the
    venues together), a share of its volume."""

    def near(price: int) -> int:
        return to_tick(price + rng.choice((-1, 0, 0, 1)) * tick_size(price))

    open_, close = near(krx.open), near(krx.close)
    high, low = max(open_, close, near(krx.high)), min(open_, close, near(krx.low))
    volume = max(1, int(krx.volume * share * rng.lognormvariate(0, 0.3)))
    return Bar(krx.stock_code, krx.minute, open_, high, low, close, volume)


@functools.cache
def default_nextrade_codes() -> frozenset[str]:
    """The codes Nextrade trades by default: the default watch-list's (large caps, which it trades in
    reality); any other code, e.g. a generated ``A00001``, is not traded there."""
    with DEFAULT_WATCHLIST.open(encoding="utf-8", newline="") as handle:
        return frozenset(row["code"].strip() for row in csv.DictReader(handle))


def _u_shape(fraction: float) -> float:
    """Relative volume over the day: busy at the open and towards the close, quiet at lunch."""
    return 0.4 + 2.4 * (fraction - 0.5) ** 2


def _random_bar(rng: random.Random, code: str, minute: datetime, last: int, profile: _Profile, weight: float) -> Bar:
    open_ = last
    close = to_tick(open_ * math.exp(rng.gauss(0, profile.volatility)))
    high = max(open_, close, to_tick(max(open_, close) * (1 + abs(rng.gauss(0, profile.volatility / 2)))))
    low = min(open_, close, to_tick(min(open_, close) * (1 - abs(rng.gauss(0, profile.volatility / 2)))))
    volume = max(1, int(profile.minute_volume * weight * rng.lognormvariate(0, 0.5)))
    return Bar(code, minute, open_, high, low, close, volume)
