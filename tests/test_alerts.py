"""The notifier: every alert reaches the alerts table, and e-mail when it is configured."""

from __future__ import annotations

import asyncio
import email
import json
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime

import psycopg
import pytest

from kis import schema
from kis.alerts import Alert, codes_alerted, deadline_missed, resolve_fetched, resolve_verified, send_alert
from kis.bar import KST
from kis.venues import Venue


class _SmtpSink(socketserver.StreamRequestHandler):
    """Just enough SMTP to take one message: what Airflow's SmtpHook says, answered with 2xx/3xx."""

    def handle(self) -> None:
        self.wfile.write(b"220 sink\r\n")
        while line := self.rfile.readline():
            command = line.decode().strip().upper()
            if command.startswith(("EHLO", "HELO")):
                self.wfile.write(b"250 sink\r\n")
            elif command == "DATA":
                self.wfile.write(b"354 go on\r\n")
                body = b"".join(iter(lambda: self.rfile.readline(), b".\r\n"))
                self.server.messages.append(body.decode())
                self.wfile.write(b"250 queued\r\n")
            elif command == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_sink() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpSink)
    server.messages = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def desk_mail(smtp_sink, monkeypatch: pytest.MonkeyPatch) -> socketserver.ThreadingTCPServer:
    """Alerts mailed to desk@example.com through ``smtp_sink``, whose ``messages`` they land in."""
    host, port = smtp_sink.server_address
    monkeypatch.setenv("AIRFLOW_VAR_KIS_ALERT_EMAIL", "desk@example.com")
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps({"conn_type": "smtp", "host": host, "port": port,
                    "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "kis@example.com"}}),
    )
    return smtp_sink


@pytest.fixture
def market_db(monkeypatch: pytest.MonkeyPatch, market_dsn: str) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_KIS_MARKET_DB", market_dsn)
    return market_dsn


GAP = Alert(
    kind="gap",
    message="005930: 2 closed minute(s) still missing: 10:05, 10:06",
    trading_date=date(2026, 11, 25),
    dag_id="kis_minute_bars",
    run_id="scheduled__2026-11-25T01:09:00+00:00",
    stock_code="005930",
    minutes=[datetime(2026, 11, 25, 10, 5, tzinfo=KST), datetime(2026, 11, 25, 10, 6, tzinfo=KST)],
    details={"codes": 1},
)


def test_an_alert_is_stored_on_a_fresh_database(market_db: str) -> None:
    send_alert(GAP)  # the schema does not exist yet: the notifier brings it up
    with psycopg.connect(market_db) as conn:
        rows = conn.execute(
            "SELECT kind, dag_id, stock_code, trading_date, minutes, message, details FROM collection_alerts"
        ).fetchall()
    assert rows == [
        ("gap", "kis_minute_bars", "005930", date(2026, 11, 25),
         [datetime(2026, 11, 25, 10, 5), datetime(2026, 11, 25, 10, 6)], GAP.message, {"codes": 1})
    ]


def test_an_alert_names_its_venue(market_db: str) -> None:
    send_alert(replace(GAP, venue="nxt"))
    send_alert(replace(GAP, kind="unknown_code", stock_code="000660"))  # no venue in particular
    with psycopg.connect(market_db) as conn:
        assert conn.execute("SELECT kind, venue FROM collection_alerts ORDER BY id").fetchall() == [
            ("gap", "nxt"),
            ("unknown_code", None),
        ]
        day = GAP.trading_date
        assert codes_alerted(conn, "gap", day) == codes_alerted(conn, "gap", day, "nxt") == {"005930"}
        assert codes_alerted(conn, "gap", day, "krx") == set()
        assert codes_alerted(conn, "unknown_code", day) == {"000660"}


def test_an_alert_goes_out_by_e_mail_when_configured(market_db, desk_mail) -> None:
    send_alert(GAP)
    (raw,) = desk_mail.messages
    message = email.message_from_string(raw)
    assert message["To"] == "desk@example.com" and message["Subject"] == "[KIS minute bars] gap: 2026-11-25"
    body = next(part.get_payload(decode=True).decode() for part in message.walk() if not part.is_multipart())
    assert body == GAP.message


def test_a_refused_key_is_alerted_and_mailed_once_a_day_until_resolved(market_db, desk_mail) -> None:
    """Every fetch task of a run on a refused key meets the refusal: the table keeps one open
    key_refused alert per connection and day, and only that one goes out."""
    refused = Alert(kind="key_refused", message="KIS refused the app key of connection kis_second",
                    trading_date=date(2026, 11, 25), dag_id="kis_minute_bars", run_id="r1",
                    details={"conn_id": "kis_second"})
    for alert in (refused, replace(refused, run_id="r2"), replace(refused, details={"conn_id": "kis_third"}),
                  replace(refused, trading_date=date(2026, 11, 26))):
        send_alert(alert)
    send_alert(replace(refused, run_id="r3"))
    query = "SELECT trading_date, details->>'conn_id', run_id FROM collection_alerts ORDER BY 1, 2, 3"
    with psycopg.connect(market_db) as conn:
        assert conn.execute(query).fetchall() == [
            (date(2026, 11, 25), "kis_second", "r1"), (date(2026, 11, 25), "kis_third", "r1"),
            (date(2026, 11, 26), "kis_second", "r1"),
        ]
        conn.execute("UPDATE collection_alerts SET resolved_at = now()")  # the key fixed, the alert resolved
    send_alert(replace(refused, run_id="r4"))  # refused again: alerted again
    with psycopg.connect(market_db) as conn:
        assert conn.execute(query).fetchall()[1] == (date(2026, 11, 25), "kis_second", "r4")
    assert len(desk_mail.messages) == 4


def test_an_unreachable_database_does_not_fail_the_caller(monkeypatch, caplog) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_KIS_MARKET_DB", "postgresql://nobody:nothing@127.0.0.1:9/none")
    send_alert(GAP)
    assert "ALERT gap" in caplog.text and "Could not store the alert" in caplog.text


def test_a_missed_deadline_becomes_an_alert_of_its_run(market_db: str) -> None:
    context = {  # what the scheduler hands the callback (models/deadline.py, get_simple_context)
        "dag_run": {"dag_id": "kis_minute_bars", "dag_run_id": "scheduled__2026-11-25T01:31:00+00:00",
                    "logical_date": "2026-11-25T01:31:00Z", "state": "running"},
        "deadline": {"id": "d1", "deadline_time": "2026-11-25T01:31:50Z"},
    }
    asyncio.run(deadline_missed("minute run", context=context))
    with psycopg.connect(market_db) as conn:
        ((kind, run_id, trading_date, message),) = conn.execute(
            "SELECT kind, run_id, trading_date, message FROM collection_alerts"
        ).fetchall()
    assert (kind, run_id, trading_date) == ("deadline_missed", context["dag_run"]["dag_run_id"], date(2026, 11, 25))
    assert "was not done by 2026-11-25 10:31:50 KST (state running)" in message


def _alert(conn, kind: str, code: str | None, venue: str | None, day: date = date(2026, 11, 25)) -> int:
    return conn.execute(
        "INSERT INTO collection_alerts (kind, dag_id, run_id, stock_code, venue, trading_date, message)"
        " VALUES (%s, 'd', 'raised', %s, %s, %s, 'm') RETURNING id",
        (kind, code, venue, day),
    ).fetchone()[0]


def _open(conn) -> set[int]:
    return {i for (i,) in conn.execute("SELECT id FROM collection_alerts WHERE resolved_at IS NULL")}


def test_a_later_fetch_resolves_the_fetch_failed_alerts_of_its_codes_day_and_venue(market_dsn: str) -> None:
    day = date(2026, 11, 25)
    with psycopg.connect(market_dsn) as conn:
        schema.migrate(conn)
        krx = _alert(conn, "fetch_failed", "005930", "krx")
        unnamed = _alert(conn, "fetch_failed", "000660", None)  # raised before alerts named their venue: KRX
        nxt = _alert(conn, "fetch_failed", "005930", "nxt")
        other_day = _alert(conn, "fetch_failed", "005930", "krx", date(2026, 11, 24))
        gap = _alert(conn, "gap", "005930", "krx")
        assert resolve_fetched(conn, day, "krx", ["005930", "000660", "035720"], run_id="r2") == ["000660", "005930"]
        assert _open(conn) == {nxt, other_day, gap}
        assert resolve_fetched(conn, day, "krx", ["005930"], run_id="r3") == []  # resolved once, by the first
        (by,) = conn.execute("SELECT resolved_by FROM collection_alerts WHERE id = %s", (krx,)).fetchone()
        assert by == "r2" and unnamed not in _open(conn)


def test_a_later_verification_resolves_what_it_found_complete(market_dsn: str) -> None:
    day = date(2026, 11, 25)
    with psycopg.connect(market_dsn) as conn:
        schema.migrate(conn)
        gap_done = _alert(conn, "gap", "005930", "krx")
        gap_short = _alert(conn, "gap", "000660", "krx")
        day_alert = _alert(conn, "incomplete_day", None, "krx")
        nxt_gap = _alert(conn, "gap", "005930", "nxt")
        failed = _alert(conn, "fetch_failed", "005930", "krx")
        # 000660 still has a gap: the day's own alert stays open too.
        resolved = resolve_verified(conn, day, "krx", ["005930"], day_done=False, run_id="v1")
        assert resolved == [("gap", "005930")]
        assert _open(conn) == {gap_short, day_alert, nxt_gap, failed}
        # Re-verified complete: the rest of the day on KRX is settled; Nextrade's and the fetch's are not.
        resolved = resolve_verified(conn, day, "krx", ["005930", "000660"], day_done=True, run_id="v2")
        assert sorted(resolved, key=str) == [("gap", "000660"), ("incomplete_day", None)]
        assert _open(conn) == {nxt_gap, failed}
        assert gap_done not in _open(conn)


def test_a_day_short_of_the_threshold_never_reads_as_reaching_it() -> None:
    """97.9996 % against 98 %: rounded, the alert said "98 %, below the threshold 98 %"."""
    from kis.verification import DayOutcome, percent, shortfall_alert

    day = DayOutcome(
        day=date(2026, 11, 25), venue=Venue.KRX, stock_codes=("005930",), present=244_999, explained_absences=0,
        expected=250_000, threshold=0.98, codes_with_gaps=("005930",), codes_without_data=(),
        unverifiable=(), missing={}, unexpected={},
    )
    assert not day.passed  # 0.979996
    assert (percent(0.98), percent(0.97998)) == ("98 %", "97.998 %")
    assert "97.999 %, below the threshold 98 %" in shortfall_alert(day, "", dag_id="d", run_id="r").message
