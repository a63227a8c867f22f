"""The simulator's listing and its stock master files: KIS's byte layout, thousands of codes that list,
delist and halt day by day, deterministically; and minute data for exactly the codes listed that day."""

from __future__ import annotations

import io
import re
import zipfile
from collections import Counter
from datetime import date, datetime, time, timedelta
from itertools import pairwise

import httpx
import pytest
from master_files import DL_PREFERRED, ECOPRO, KR_MOTORS, SAMSUNG, SILLA_ADMINISTRATIVE, SPAC

from kis.bar import KST
from kis.errors import KisUnknownCode
from kis.masters import HEAD_LENGTH, LAYOUTS, MasterFileError, StockMarket, read_master_zip
from kis.watchlist import DEFAULT_WATCHLIST
from simulator.listings import Listings
from simulator.sessions import Sessions
from simulator.testing import run_simulator

KOSPI, KOSDAQ, KONEX = StockMarket.KOSPI, StockMarket.KOSDAQ, StockMarket.KONEX
DAY = date(2026, 11, 25)


def download(sim, market: StockMarket) -> bytes:
    response = httpx.get(f"{sim.base_url}{market.path}", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    return response.content


def mst(zipped: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        (name,) = archive.namelist()
        return archive.read(name)


def watchlist_names() -> dict[str, str]:
    lines = DEFAULT_WATCHLIST.read_text(encoding="utf-8").splitlines()[1:]
    return dict(line.split(",", 1) for line in lines)


def test_the_files_of_a_day_are_the_listing_of_that_day_in_kis_layout() -> None:
    with run_simulator(now=f"{DAY}T07:30:00+09:00") as sim:
        files = {market: download(sim, market) for market in StockMarket}
        listing = {row["code"]: row for row in sim.listing(DAY)}
    records = {market: read_master_zip(market, data).records for market, data in files.items()}
    parsed = {r.stock_code: r for rs in records.values() for r in rs}
    assert set(parsed) == set(listing)
    for code, row in listing.items():
        record = parsed[code]
        assert (record.name, record.market.value, record.security_group, record.listed_on.isoformat()) == (
            row["name"], row["market"], row["group"], row["listed_on"]
        ), code
        assert (record.halted, record.liquidation, record.administrative, record.spac, record.preferred) == (
            row["halted"], row["liquidation"], row["administrative"], row["spac"], row["preferred"]
        ), code
    # About 2,700 stocks (KOSPI ~840, KOSDAQ ~1,750, KONEX ~115), ETFs and ETNs beside them in KOSPI's file.
    groups = Counter((r.market, r.security_group) for r in parsed.values())
    assert 800 <= groups[KOSPI, "ST"] <= 900 and 1_650 <= groups[KOSDAQ, "ST"] <= 1_850 and 90 <= groups[KONEX, "KN"] <= 140
    assert groups[KOSPI, "EF"] > 100 and groups[KOSPI, "EN"] > 20 and set(groups) == {
        (KOSPI, "ST"), (KOSPI, "EF"), (KOSPI, "EN"), (KOSDAQ, "ST"), (KONEX, "KN")
    }
    assert any(r.spac for r in parsed.values()) and any(r.preferred for r in parsed.values())
    assert any(r.halted for r in parsed.values()) and any(len(c) == 7 and c[0] == "Q" for c in parsed)
    assert any(not c.isdigit() for c in parsed if len(c) == 6)  # new-style codes
    # The default watch-list: listed on KOSPI under its real names.
    for code, name in watchlist_names().items():
        assert (parsed[code].market, parsed[code].name, parsed[code].halted) == (KOSPI, name, False), code
    # The bytes: one record a line, LF, a final newline, every line of its layout's length.
    for market, data in files.items():
        content = mst(data)
        assert content.endswith(b"\n") and b"\r" not in content
        assert {len(line) for line in content.split(b"\n")[:-1]} == {LAYOUTS[market].record_length}


def shape(value: str) -> str:
    """A field's shape: digits (and a minus sign) as 9, letters as A, the rest as it is."""
    return re.sub(r"[A-Z]", "A", re.sub(r"[0-9-]", "9", value))


def real_shapes(market: StockMarket, lines: list[str]) -> dict[str, set[str]]:
    layout = LAYOUTS[market]
    tails = [line.encode("cp949")[HEAD_LENGTH:].decode("ascii") for line in lines]
    return {name: {shape(tail[place]) for tail in tails} for name, place in layout.slices.items()}


def test_every_field_of_a_simulated_stock_looks_like_the_real_files() -> None:
    """Each tail field of every simulated stock (group ST) has a shape the real lines have there."""
    real = {
        KOSPI: real_shapes(KOSPI, [SAMSUNG, KR_MOTORS, DL_PREFERRED]),
        KOSDAQ: real_shapes(KOSDAQ, [ECOPRO, SPAC, SILLA_ADMINISTRATIVE]),
    }
    with run_simulator(now=f"{DAY}T07:30:00+09:00") as sim:
        contents = {market: mst(download(sim, market)) for market in real}
    for market, content in contents.items():
        layout = LAYOUTS[market]
        for line in content.split(b"\n")[:-1]:
            tail = line[HEAD_LENGTH:].decode("ascii")
            if tail[:2] != "ST":
                continue
            for name, place in layout.slices.items():
                assert shape(tail[place]) in real[market][name], (market, line[:9], name, tail[place])
            assert line[:9].decode("ascii").rstrip() == line[:9].decode("ascii").strip()  # left-aligned code
            line[21:61].decode("cp949")  # a name of whole cp949 characters, space-padded


def test_the_listing_changes_day_by_day_and_is_the_same_in_any_process() -> None:
    sessions = Sessions()
    one, other_seed = Listings(0, sessions), Listings(1, sessions)
    days = [s.day for s in sessions.sessions_between(date(2026, 11, 2), date(2026, 11, 27))]
    asked_backwards = {day: Listings(0, sessions).on(day) for day in reversed(days)}
    listed = delisted = halts = 0
    for before, day in pairwise(days):
        assert one.on(day) == asked_backwards[day]
        today, yesterday = {x.code for x in one.on(day)}, {x.code for x in one.on(before)}
        listed += len(today - yesterday)
        delisted += len(yesterday - today)
        halts += sum(one.halted(code, day) and not one.halted(code, before) for code in today & yesterday)
        for code in today - yesterday:
            assert one.get(code).listed_on == day
        for code in yesterday - today:
            assert one.get(code).delisted_on == day
            assert one.liquidation(one.get(code), before)  # 정리매매 on its last days
    # About a listing and a delisting a session, several halts (KRX's yearly rates, see the README).
    assert 5 <= listed <= 60 and 5 <= delisted <= 40 and halts >= 40
    assert {x.code for x in one.on(DAY)} != {x.code for x in other_seed.on(DAY)}
    with run_simulator(now=f"{DAY}T07:30:00+09:00") as a, run_simulator(now=f"{DAY}T07:31:00+09:00") as b:
        assert download(a, KOSDAQ) == download(b, KOSDAQ)
        a.set_now(f"{days[-1]}T07:30:00+09:00")
        assert download(a, KOSDAQ) != download(b, KOSDAQ)


def test_a_code_answers_only_while_it_is_listed_and_trades_nothing_while_halted(point_kis_at) -> None:
    from kis.hook import KisHook

    sessions = Sessions()
    listings = Listings(0, sessions)
    days = [s.day for s in sessions.sessions_between(date(2026, 11, 2), date(2026, 12, 18))]
    last_day, gone = next(
        (before, x) for before, day in pairwise(days) for x in listings.on(before) if x.delisted_on == day and x.group == "ST"
    )
    new = next(x for day in days for x in listings.on(day) if x.listed_on == day and x.group == "ST")
    halt_day, halted = next((day, x) for day in days for x in listings.on(day) if listings.halted(x.code, day))

    def close_of(day: date) -> datetime:
        return datetime.combine(day, time(15, 40), tzinfo=KST)

    with run_simulator(now=close_of(last_day)) as sim:
        point_kis_at(sim, token_issue_interval=1)

        def bars(code: str, day: date) -> list:
            sim.set_now(close_of(day))
            with KisHook(backoff_max=0.01) as hook:  # a hook per day: it keeps KIS's clock as it read it
                return hook.recent_bars(code, until=close_of(day) - timedelta(minutes=10)).bars

        assert bars(gone.code, last_day)  # its last day: liquidation trading
        with pytest.raises(KisUnknownCode):
            bars(gone.code, gone.delisted_on)  # delisted: KIS no longer knows it
        with pytest.raises(KisUnknownCode):
            bars(new.code, days[days.index(new.listed_on) - 1])  # not listed yet
        assert bars(new.code, new.listed_on)  # its first day
        assert bars(halted.code, halt_day) == []  # listed, halted: no trade the whole day
        absences = sim.absences(halted.code, halt_day)
        assert len(absences) == len(sessions.session(halt_day).bar_minutes)
        assert {a["reason"] for a in absences} == {"trading_halt"}
        assert sim.off_session(halted.code, halt_day) == [] and sim.truth(halted.code, halt_day) == []
        # Codes the listing does not govern trade every session, as before.
        assert bars("A00001", halt_day) and bars("000100", halt_day)


def test_damaged_files_on_demand_and_other_paths() -> None:
    with run_simulator(now=f"{DAY}T07:30:00+09:00") as sim:
        sim.set_faults({"damaged_masters": {"kosdaq": "truncated_record", "konex": "truncated_zip"}})
        with pytest.raises(MasterFileError, match=r"kosdaq_code.mst line \d+: 272 bytes"):
            read_master_zip(KOSDAQ, download(sim, KOSDAQ))
        with pytest.raises(MasterFileError, match="not a readable zip archive"):
            read_master_zip(KONEX, download(sim, KONEX))
        assert read_master_zip(KOSPI, download(sim, KOSPI)).records
        sim.set_faults({})
        assert read_master_zip(KOSDAQ, download(sim, KOSDAQ)).records
        assert httpx.get(f"{sim.base_url}/common/master/elw_code.mst.zip").status_code == 404
        bad = httpx.post(f"{sim.base_url}/_sim/faults", json={"damaged_masters": {"kosdaq": "eaten"}})
        assert bad.status_code == 400 and "truncated_zip" in bad.json()["error"]
        # The Date of the answer is the market clock's, as on every answer.
        assert httpx.get(f"{sim.base_url}{KOSPI.path}").headers["date"].startswith("Tue, 24 Nov 2026 22:3")
