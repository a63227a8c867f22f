"""What a person reads in the task logs of a run: each value said once, in words, never a dump of
the SQL with every bar as its parameter, nor the same list twice (issue 24).

``dag.test()`` prints the operators' log lines (Airflow's structured log) on stdout.
"""

from __future__ import annotations

import re

from simulated_day import CODES, kst

# A batch of the gates' value, as the log shows it.
FIRST_BATCH = "{'venue': 'krx', 'codes': ['005930'], 'conn_ids': ['kis_default']}"


def test_the_upsert_logs_one_line_of_counts_and_no_bars(market, capfd) -> None:
    assert market.run("kis_minute_bars", kst("2026-11-25T10:31")).state == "success"
    log = capfd.readouterr().out
    bars = 30 * len(CODES)
    assert re.findall(r"\] result: (\{[^}]*\})", log) == [
        f"{{'received': {bars}, 'duplicates': 0, 'inserted': {bars}, 'updated': 0, 'unchanged': 0}}"
    ]
    assert "Running statement" not in log and "Operator output" not in log
    # The statements' text once at most (the operator's "Executing"), the bars never.
    assert log.count("INSERT INTO stock_prices_minute") <= 1
    assert '"bars"' not in log
    assert log.count(FIRST_BATCH) == 1  # the session gate's batches


def test_the_trading_day_gate_logs_its_batches_once(market, capfd) -> None:
    assert market.run("kis_minute_backfill", kst("2026-11-25T16:00")).state == "success"
    assert capfd.readouterr().out.count(FIRST_BATCH) == 1
