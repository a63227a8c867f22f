"""The simulated listing: which codes KRX lists on each day, as KIS's stock masters show them.

A market of about 2,900 codes at the start of 2025, every one with a life: KOSPI (about 840 stocks,
the default watch-list's 50 among them, with their real names; 160 ETFs, 40 ETNs), KOSDAQ (about
1,750 stocks, SPACs included) and KONEX (115). From 2025-01-02 on, each session lists new codes and
delists others at yearly rates close to KRX's (invented shares, simulator/README.md); a code halts
now and then, for a day or for weeks. Everything is drawn from ``(seed, ...)`` through
``stable_seed``: any day's listing comes out the same in any process, in any order of questions.

The listing governs its own codes only (:meth:`Listings.governs`): a code it never lists, such as
the ``A00001`` ... of the benchmarks or the ``000100`` ... of the tests, keeps trading every session
as before. Its generated codes are never below ``001000`` (numeric) or ``0200A0`` (new style), so
that hand-written test codes stay free; the watch-list's codes are listed, and never halted or
delisted.
"""

from __future__ import annotations

import bisect
import csv
import functools
import math
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from kis.masters import StockMarket
from simulator.market import DEFAULT_WATCHLIST, stable_seed
from simulator.sessions import Sessions

__all__ = ["EPOCH", "HORIZON", "Listing", "Listings", "built_listings", "standard_code"]

#: Codes are listed and delisted from this session on; before it the base population stands still.
EPOCH = date(2025, 1, 2)
#: No listing is generated after this day: the codes the listing governs are a closed set.
HORIZON = date(2031, 1, 1)
# A halt spell starts in a 30-day block at these odds, and lasts one day, a few, or weeks.
HALT_BLOCK_DAYS = 30
HALT_PROBABILITY = 0.067
HALT_LENGTHS = ((0.6, 1, 1), (0.25, 2, 5), (0.15, 10, 60))  # (share, shortest, longest) in calendar days
ADMINISTRATIVE_SHARE = 0.02  # codes under administrative supervision for good
ADMINISTRATIVE_BEFORE_DELISTING = timedelta(days=60)
LIQUIDATION_SESSIONS = 5  # 정리매매: the last sessions before a delisting

# New-style codes (KRX has issued letters since its numeric codes ran out): 0 + 3 digits + a letter + 0.
NEW_STYLE_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


@dataclass(frozen=True)
class _Segment:
    """A kind of listing: how many at the epoch, how many a session after, how long they live."""

    market: StockMarket
    group: str  # 증권그룹구분코드 (KONEX: KN, as its layout header says; unconfirmed on a real file)
    kind: str  # common | spac | etf | etn (preferred shares come with some base commons)
    base: int
    per_session: float
    mean_life_years: float
    since: date  # the earliest listing date of the base


SEGMENTS = (
    _Segment(StockMarket.KOSPI, "ST", "common", 685, 0.05, 70, date(1975, 1, 1)),
    _Segment(StockMarket.KOSPI, "EF", "etf", 160, 0.15, 6, date(2002, 10, 14)),
    _Segment(StockMarket.KOSPI, "EN", "etn", 40, 0.05, 4, date(2014, 11, 17)),
    _Segment(StockMarket.KOSDAQ, "ST", "common", 1_658, 0.33, 25, date(1996, 7, 1)),
    _Segment(StockMarket.KOSDAQ, "ST", "spac", 80, 0.12, 2.5, date(2022, 1, 3)),
    _Segment(StockMarket.KONEX, "KN", "common", 115, 0.04, 10, date(2013, 7, 1)),
)
#: Base commons with a preferred share listed beside them (code ending in 5, name + 우).
PREFERRED = {StockMarket.KOSPI: 105, StockMarket.KOSDAQ: 12}

_HEADS = ("한국", "대한", "동방", "삼양", "신성", "우진", "미래", "태평양", "대성", "세원", "한일", "동화", "유니",
          "에이스", "제일", "신화", "코리아", "그린", "서울", "부산", "경동", "광명", "오성", "성우", "대원", "진흥",
          "아이", "엘티", "피엔", "한성", "동양", "금호", "청호", "새한", "일진", "영풍", "화승", "남선", "대창",
          "KB", "DB", "HL", "JW", "SG", "KT", "LS", "GS", "CJ", "LX", "SJ", "KG")  # fmt: skip
_CORES = ("전자", "화학", "바이오", "제약", "건설", "중공업", "테크", "소재", "에너지", "식품", "물산", "산업", "정밀",
          "반도체", "통신", "게임즈", "엔터", "로보틱스", "디스플레이", "시스템", "메디칼", "헬스케어", "금속",
          "섬유", "철강", "해운", "제지", "기계", "모터스", "머티리얼즈", "솔루션", "네트웍스", "파마", "이앤씨")  # fmt: skip
_TAILS = ("", "", "", "", "홀딩스", "글로벌", "인터내셔널", "코퍼레이션", "앤컴퍼니")
_SPAC_SPONSORS = ("하나금융", "대신밸런스", "엔에이치", "미래에셋비전", "교보", "유안타", "케이비", "신한", "삼성",
                  "디비금융", "IBKS", "키움", "한화플러스", "에스케이", "유진")  # fmt: skip
_ETF_BRANDS = ("KODEX", "TIGER", "RISE", "ACE", "SOL", "HANARO", "ARIRANG", "KOSEF", "PLUS", "TIMEFOLIO")
_ETF_THEMES = ("200", "코스닥150", "미국S&P500", "미국나스닥100", "2차전지산업", "반도체", "레버리지", "인버스",
               "단기채권", "국고채10년", "골드선물(H)", "고배당", "헬스케어", "인도Nifty50", "일본니케이225",
               "중국CSI300", "미국채10년선물", "AI반도체", "조선TOP10", "방산", "200선물인버스2X", "KRX금현물")  # fmt: skip
_ETN_ISSUERS = ("신한", "삼성", "미래에셋", "KB", "한투", "NH", "메리츠", "하나", "키움", "대신")
_ETN_THEMES = ("레버리지 WTI원유 선물", "인버스 2X 천연가스 선물", "구리 선물", "미국 S&P500", "금 선물",
               "미국채 30년 선물", "코스피 변동성", "KRX 2차전지 TOP10")  # fmt: skip


@dataclass(frozen=True)
class Listing:
    """One code's life on the exchange."""

    code: str
    standard_code: str
    name: str
    market: StockMarket
    group: str
    kind: str  # common | preferred | spac | etf | etn
    listed_on: date
    delisted_on: date | None  # the first session it is no longer listed; None: beyond the horizon
    watched: bool = False  # a code of the default watch-list: never halted, never delisted
    administrative: bool = False  # under administrative supervision for good

    def listed(self, day: date) -> bool:
        return self.listed_on <= day and (self.delisted_on is None or day < self.delisted_on)


class Listings:
    """Every code the simulated exchange lists between its base and ``HORIZON``, built on first use.

    :param seed: the market's seed.
    :param sessions: the simulator's sessions (listings and delistings happen on sessions).
    """

    def __init__(self, seed: int, sessions: Sessions, watchlist: Path = DEFAULT_WATCHLIST) -> None:
        self.seed, self.sessions, self.watchlist = seed, sessions, watchlist
        self._on: dict[date, tuple[Listing, ...]] = {}
        self._halted: dict[tuple[str, date], bool] = {}
        self._liquidation_days: dict[date, frozenset[date]] = {}

    def build(self) -> Listings:
        """Draws every listing now (about 0.2 s) instead of at the first question."""
        _ = self._listings
        return self

    def governs(self, code: str) -> bool:
        """Whether ``code`` is one of the listing's (listed on some day); any other code is free."""
        return code in self._listings

    def get(self, code: str) -> Listing | None:
        return self._listings.get(code)

    def listed(self, code: str, day: date) -> bool:
        listing = self._listings.get(code)
        return listing is not None and listing.listed(day)

    def on(self, day: date) -> tuple[Listing, ...]:
        """The codes listed on ``day``, in code order (the order of a master file)."""
        if day not in self._on:
            if len(self._on) > 64:
                self._on.clear()
            self._on[day] = tuple(sorted((x for x in self._listings.values() if x.listed(day)), key=lambda x: x.code))
        return self._on[day]

    def halted(self, code: str, day: date) -> bool:
        """거래정지 on ``day``: spells of one day to two months, none for a watch-list code nor in
        the liquidation before a delisting (those days trade)."""
        key = (code, day)
        if key not in self._halted:
            listing = self._listings.get(code)
            self._halted[key] = (
                listing is not None and listing.listed(day) and not listing.watched
                and not self.liquidation(listing, day) and self._in_halt_spell(code, day)
            )  # fmt: skip
        return self._halted[key]

    def liquidation(self, listing: Listing, day: date) -> bool:
        """정리매매: one of the last ``LIQUIDATION_SESSIONS`` sessions before the delisting."""
        if listing.delisted_on is None:
            return False
        if listing.delisted_on not in self._liquidation_days:
            before = self._sessions[: bisect.bisect_left(self._sessions, listing.delisted_on)]
            self._liquidation_days[listing.delisted_on] = frozenset(before[-LIQUIDATION_SESSIONS:])
        return day in self._liquidation_days[listing.delisted_on]

    def administrative(self, listing: Listing, day: date) -> bool:
        """관리종목: for good, or in the two months before a delisting."""
        return listing.administrative or (
            listing.delisted_on is not None and listing.delisted_on - ADMINISTRATIVE_BEFORE_DELISTING <= day
        )

    def _in_halt_spell(self, code: str, day: date) -> bool:
        ordinal = day.toordinal()
        block = ordinal // HALT_BLOCK_DAYS
        longest = max(longest for _, _, longest in HALT_LENGTHS)
        for start_block in range(block - math.ceil(longest / HALT_BLOCK_DAYS), block + 1):
            rng = random.Random(stable_seed(self.seed, code, "halt", start_block))
            if rng.random() >= HALT_PROBABILITY:
                continue
            start = start_block * HALT_BLOCK_DAYS + rng.randrange(HALT_BLOCK_DAYS)
            if start <= ordinal < start + _halt_length(rng):
                return True
        return False

    @functools.cached_property
    def _sessions(self) -> list[date]:
        days = (EPOCH + timedelta(days=n) for n in range((HORIZON - EPOCH).days))
        return [day for day in days if self.sessions.session(day) is not None]

    @functools.cached_property
    def _listings(self) -> dict[str, Listing]:
        return _Builder(self.seed, self._sessions, self.watchlist).build()


@functools.cache
def built_listings(seed: int) -> Listings:
    """The listing of ``seed``, built once per process and before a simulator serves: built at its
    first quotation instead, it would stall the event loop and release the requests of that moment
    in one burst (a rate-limit test saw 22 calls in a second from a client paced at 16). Listings
    follow KRX's sessions, which no simulator option changes."""
    return Listings(seed, Sessions()).build()


class _Builder:
    """Draws the base population and every session's listings, allotting unique codes."""

    def __init__(self, seed: int, sessions: list[date], watchlist: Path) -> None:
        self.seed, self.sessions = seed, sessions
        with watchlist.open(encoding="utf-8", newline="") as handle:
            self.watched = {row["code"]: row["name"] for row in csv.DictReader(handle)}
        self.used: set[str] = set(self.watched)
        self.names: set[str] = set(self.watched.values())
        self.listings: dict[str, Listing] = {}

    def build(self) -> dict[str, Listing]:
        for code, name in self.watched.items():
            rng = random.Random(stable_seed(self.seed, code, "listing"))
            listed_on = _weekday(rng, date(1975, 1, 1), date(2022, 1, 1))
            self._add(Listing(code, standard_code(code), name, StockMarket.KOSPI, "ST", "common", listed_on, None, True))
        for segment in SEGMENTS:
            preferred = PREFERRED.get(segment.market, 0) if segment.kind == "common" else 0
            for n in range(segment.base):
                rng = random.Random(stable_seed(self.seed, segment.market, segment.kind, "base", n))
                listed_on = _weekday(rng, segment.since, EPOCH - timedelta(days=1))
                common = self._draw(rng, segment, listed_on, EPOCH, new_style=False)
                if n < preferred:
                    self._preferred(rng, common)
        for day in self.sessions:
            for segment in SEGMENTS:
                rng = random.Random(stable_seed(self.seed, segment.market, segment.kind, "listings", day.isoformat()))
                # Three draws of a third of the rate: a Poisson-like count, at most three a session.
                for _ in range(sum(rng.random() < segment.per_session / 3 for _ in range(3))):
                    self._draw(rng, segment, day, day, new_style=segment.kind != "etn")
        return self.listings

    def _draw(self, rng: random.Random, segment: _Segment, listed_on: date, alive_from: date, *, new_style: bool) -> Listing:
        code = self._code(rng, segment.kind, new_style)
        life = rng.expovariate(1 / (segment.mean_life_years * 365.25))
        listing = Listing(
            code=code,
            standard_code=standard_code(code),
            name=self._name(rng, segment.kind),
            market=segment.market,
            group=segment.group,
            kind=segment.kind,
            listed_on=listed_on,
            delisted_on=self._session_after(alive_from + timedelta(days=max(1, int(life)))),
            administrative=segment.group in ("ST", "KN") and rng.random() < ADMINISTRATIVE_SHARE,
        )
        self._add(listing)
        return listing

    def _preferred(self, rng: random.Random, common: Listing) -> None:
        code = common.code[:5] + "5"
        name = _fit(common.name + "우")
        self._add(
            Listing(code, standard_code(code), name, common.market, "ST", "preferred",
                    max(common.listed_on, _weekday(rng, common.listed_on, EPOCH - timedelta(days=1))),
                    common.delisted_on, administrative=common.administrative)
        )  # fmt: skip

    def _add(self, listing: Listing) -> None:
        self.listings[listing.code] = listing
        self.used.add(listing.code)
        self.names.add(listing.name)

    def _code(self, rng: random.Random, kind: str, new_style: bool) -> str:
        while True:
            if kind == "etn":
                code = f"Q5{rng.randrange(1, 100_000):05d}"
                taken = {code}
            elif new_style:
                code = f"0{rng.randrange(200, 1000):03d}{rng.choice(NEW_STYLE_LETTERS)}0"
                taken = {code}
            else:  # a common keeps the code ending in 5 free for its preferred share
                prefix = f"{rng.randrange(100, 50_000):05d}"
                code, taken = prefix + "0", {prefix + "0", prefix + "5"}
            if not taken & self.used:
                self.used |= taken
                return code

    def _name(self, rng: random.Random, kind: str) -> str:
        for attempt in range(100):
            if kind == "etf":
                name = f"{rng.choice(_ETF_BRANDS)} {rng.choice(_ETF_THEMES)}"
            elif kind == "etn":
                name = f"{rng.choice(_ETN_ISSUERS)} {rng.choice(_ETN_THEMES)} ETN"
            elif kind == "spac":
                name = f"{rng.choice(_SPAC_SPONSORS)}제{rng.randrange(1, 40)}호스팩"
            else:
                name = rng.choice(_HEADS) + rng.choice(_CORES) + rng.choice(_TAILS)
            name = _fit(name + (f" {attempt + 1}" if attempt else ""))
            if name not in self.names:
                return name
        raise RuntimeError("no free name")  # 100 draws from thousands of combinations: unreachable in practice

    def _session_after(self, day: date) -> date | None:
        index = bisect.bisect_left(self.sessions, day)
        return self.sessions[index] if index < len(self.sessions) else None


def standard_code(code: str) -> str:
    """An ISIN for a short code (KR7 + the code + 00 + the check digit; a preferred share's ISIN
    carries its common's first five characters and the class digit 1; an ETN's KRG + its digits)."""
    if code.startswith("Q"):
        body = "KRG" + code[1:] + "00"
    elif code.endswith("5") and code[:5].isdigit():
        body = "KR7" + code[:5] + "100"
    else:
        body = "KR7" + code + "00"
    return body + _isin_check_digit(body)


def _isin_check_digit(body: str) -> str:
    """ISO 6166: letters become two digits (A=10), then the Luhn check over the digits."""
    digits = "".join(str(int(c, 36)) for c in body)
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return str((10 - total % 10) % 10)


def _fit(name: str) -> str:
    """The name cut to the 40 bytes of the master file's field (cp949), on a whole character."""
    while len(name.encode("cp949")) > 40:
        name = name[:-1]
    return name.rstrip()


def _weekday(rng: random.Random, start: date, end: date) -> date:
    day = start + timedelta(days=rng.randrange((end - start).days + 1))
    return day - timedelta(days=max(0, day.weekday() - 4))


def _halt_length(rng: random.Random) -> int:
    roll = rng.random()
    for share, shortest, longest in HALT_LENGTHS:
        if roll < share:
            return rng.randint(shortest, longest)
        roll -= share
    return HALT_LENGTHS[-1][2]

