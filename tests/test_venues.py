"""Nextrade and the unified view through both DAGs (`dag.test()`, PostgreSQL) against the simulator.

The simulator serves NX and UN on its documented assumption (docs/kis-api.md); these tests check
that the collector stores what it serves, whatever the grid predicted.
"""

from __future__ import annotations

from datetime import date

from simulated_day import announced, kst, task_states

DAY = date(2026, 11, 25)
CODES = ["005930", "000660"]


def at(hhmm: str):
    return kst(f"{DAY}T{hhmm}")


def verification(market, venue: str) -> dict[str, tuple]:
    rows = market.query(
        "SELECT stock_code, status, expected, present, stored, unexpected_minutes FROM minute_verification"
        " WHERE trading_date = %s AND venue = %s ORDER BY stock_code",
        DAY, venue,
    )
    return {code: tuple(rest) for code, *rest in rows}


def test_a_unified_day_from_the_pre_market_to_the_after_market(simulated_market, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_KIS_VENUES", '["unified"]')
    with simulated_market(codes=CODES) as market:
        ticks = ["08:31", "09:01", "12:00", "15:31", "17:00", "20:00"]
        for hhmm in ticks:
            assert market.run("kis_minute_bars", at(hhmm)).state == "success", hhmm
        # Each run stored the newest 30 closed unified bars (a page): pre-market, main and
        # after-market minutes alike, and nothing under KRX.
        stored = market.stored(DAY, CODES, venue="unified")
        for code in CODES:
            truth = market.sim.truth(code, DAY, venue="unified")
            pages = {bar for hhmm in ticks for bar in [b for b in truth if b.minute < at(hhmm)][-30:]}
            assert stored[code] == sorted(pages, key=lambda bar: bar.minute), code
            assert {bar.minute.hour for bar in stored[code]} >= {8, 11, 15, 16, 19}, code
        assert market.stored(DAY, CODES) == {code: [] for code in CODES}
        requests = market.data_requests()
        assert requests == len(CODES) * len(ticks)  # one request per code and run

        # KRX's 16:00 backfill has nothing to do; the 20:10 backfill covers the unified day.
        krx = market.run("kis_minute_backfill", at("16:00"))
        assert krx.state == "success" and set(task_states(krx)["fetch_session_bars"]) == {"skipped"}
        assert announced(krx) == []  # KRX is not collected: no KRX day to announce
        assert market.data_requests() == requests
        evening = market.run("kis_minute_backfill_nextrade", at("20:10"))
        assert evening.state == "success", task_states(evening)
        stored = market.stored(DAY, CODES, venue="unified")
        for code in CODES:
            assert stored[code] == market.sim.truth(code, DAY, venue="unified"), code
        report = verification(market, "unified")
        assert set(report) == set(CODES)
        for code, (status, expected, present, count, unexpected) in report.items():
            assert expected == 691 and count == len(stored[code]) and unexpected == [], code
            assert status in ("complete", "complete_with_explained_absences", "unverifiable"), (code, status)
        labels = sorted(ti.rendered_map_index for ti in evening.get_task_instances() if ti.task_id == "fetch_session_bars")
        assert labels == [f"unified {code}" for code in sorted(CODES)]
        # The unified day is announced, never Nextrade's, which this backfill covers but did not verify.
        assert [(e.asset.name, e.extra["date"], e.extra["codes"]) for e in announced(evening)] == [
            ("kis_minute_bars_unified", "2026-11-25", sorted(CODES))
        ]


def test_a_code_nextrade_does_not_trade_is_reported_once_and_not_asked_again(simulated_market, monkeypatch):
    unlisted = "A00001"  # a generated code: on KRX, not on Nextrade (the simulator's listing)
    monkeypatch.setenv("AIRFLOW_VAR_KIS_VENUES", '["krx", "nxt"]')
    with simulated_market(codes=[CODES[0], unlisted]) as market:
        for hhmm in ("10:01", "10:02", "10:03"):
            assert market.run("kis_minute_bars", at(hhmm)).state == "success", hhmm
        alerts = market.query("SELECT kind, stock_code, venue FROM collection_alerts WHERE kind <> 'gap' ORDER BY id")
        assert alerts == [("not_on_venue", unlisted, "nxt")]
        # Three runs: both codes on KRX each time, the unlisted code on Nextrade in the first only.
        assert market.data_requests() == 3 * 2 + (2 + 1 + 1)
        assert market.stored(DAY, [unlisted], venue="nxt")[unlisted] == []
        assert market.stored(DAY, [unlisted])[unlisted]  # KRX still collects it

        evening = market.run("kis_minute_backfill_nextrade", at("20:10"))
        assert evening.state == "success", task_states(evening)
        assert set(verification(market, "nxt")) == {CODES[0]}  # information, not a gap
        assert market.query("SELECT count(*) FROM collection_alerts WHERE kind = 'not_on_venue'") == [(1,)]


def test_a_minute_the_grid_did_not_predict_is_stored_and_reported(simulated_market, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_KIS_VENUES", '["nxt"]')
    code = CODES[0]
    # Nextrade's after-market is in the grid from 15:40; the simulator serves bars in the pause
    # before it and one labelled 20:00, after its last predicted minute.
    faults = {"unpredicted_minutes": [{"code": code, "venue": "nxt", "minute": m} for m in ("15:25", "20:00")]}
    with simulated_market(codes=[code], faults=faults) as market:
        assert market.run("kis_minute_bars", at("15:41")).state == "success"  # the after-market's first bar closed
        assert at("15:25") in [bar.minute for bar in market.stored(DAY, [code], venue="nxt")[code]]
        evening = market.run("kis_minute_backfill_nextrade", at("20:10"))
        assert evening.state == "success", task_states(evening)
        stored = market.stored(DAY, [code], venue="nxt")[code]
        assert stored == market.sim.truth(code, DAY, venue="nxt")
        _status, expected, present, count, unexpected = verification(market, "nxt")[code]
        assert [m.strftime("%H:%M") for m in unexpected] == ["15:25", "20:00"]
        assert count == len(stored) == present + 2 and expected == 690
        # Nextrade's day is announced, never the unified one, which this backfill covers too.
        assert [(e.asset.name, e.extra["venue"]) for e in announced(evening)] == [("kis_minute_bars_nxt", "nxt")]


def test_the_default_asks_nothing_outside_krx_hours(market):
    for hhmm in ("08:31", "19:31"):
        dag_run = market.run("kis_minute_bars", at(hhmm))
        assert dag_run.state == "success" and set(task_states(dag_run)["upsert_bars"]) == {"skipped"}
    evening = market.run("kis_minute_backfill_nextrade", at("20:10"))
    assert evening.state == "success" and set(task_states(evening)["fetch_session_bars"]) == {"skipped"}
    assert market.sim.counters()["requests_by_endpoint"] == {}
