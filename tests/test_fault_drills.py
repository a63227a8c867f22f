"""Fault drills (issue 7): a simulated trading day under one kind of fault, through both DAGs.

Each drill drives 2026-11-25 with ``dag.test()`` runs of ``kis_minute_bars`` at a few minutes and
then ``kis_minute_backfill``, against the simulator and a real PostgreSQL, and holds the promise of
the issue: after the backfill the table equals the simulator's ground truth, or the minutes it
lacks are exactly those reported in ``minute_verification`` and alerted in ``collection_alerts``.
Each prints what it injected and what the table looked like afterwards (``pytest -s``, or
``bench/fault_drills.py``, which runs every drill), and scans everything its tasks logged for the
app key, the app secret and every token issued.

The market-database outage stops a PostgreSQL cluster for two minutes: it runs only under
``bench/fault_drills.py``, on a cluster of its own (see ``test_market_database_outage``).
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from simulated_day import Market, kst, task_states

from devtools import airflow_env
from devtools.net import free_port
from kis import endpoints, schema, storage, task_context
from kis.bar import Bar
from kis.hook import KisHook

DAY = date(2026, 11, 25)
TWO_CODES = ["005930", "000660"]
# Set by bench/fault_drills.py: the state directory of the cluster the outage drill may stop.
OUTAGE_STATE_DIR_ENV = "KIS_DRILL_OUTAGE_STATE_DIR"
OUTAGE_SECONDS = 120
DELISTED = {"unknown_codes": ["999990"]}


def at(hhmm: str) -> datetime:
    """A minute of the drilled day, KST."""
    return kst(f"{DAY.isoformat()}T{hhmm}")


# --- the drill harness --------------------------------------------------------------------------


@dataclass
class Drill:
    """One drill: its market, what it injected and saw, and the secrets its logs must not contain."""

    name: str
    capfd: pytest.CaptureFixture[str]  # what Airflow's own loggers print: the task logs of dag.test()
    caplog: pytest.LogCaptureFixture  # the records of every other logger (kis.*): pytest takes them
    start_market: Callable[..., Any]  # the simulated_market fixture
    show: bool  # pytest -s: the report goes past the capture, as the bench wants it
    tokens: list[str]  # every token issued while the drill ran (filled by the ``drill`` fixture)
    lines: list[str] = field(default_factory=list)
    market: Market | None = None
    started: float = field(default_factory=time.time)

    @contextmanager
    def simulate(self, codes: Sequence[str], **simulator: Any) -> Iterator[Market]:
        """The drill's market, with credentials of its own: the secrets scan cannot mistake them."""
        credentials = {
            "appkey": f"DRILLKEY{secrets.token_hex(14)}",
            "appsecret": f"DRILLSECRET{secrets.token_hex(40)}",
        }
        with self.start_market(codes=list(codes), **credentials, **simulator) as market:
            self.market = market
            yield market

    def note(self, text: str) -> None:
        self.lines.append(text)

    def runs(self, *minutes: str) -> dict[str, Any]:
        """One ``kis_minute_bars`` run per minute (HH:MM), in order, noted; the DagRuns."""
        dag_runs = {hhmm: self._run("kis_minute_bars", hhmm) for hhmm in minutes}
        self.note("  minute runs: " + ", ".join(f"{hhmm} {text}" for hhmm, (_, text) in dag_runs.items()))
        return {hhmm: dag_run for hhmm, (dag_run, _) in dag_runs.items()}

    def backfill(self) -> Any:
        """The 16:00 ``kis_minute_backfill`` run, noted; the DagRun."""
        dag_run, text = self._run("kis_minute_backfill", "16:00")
        self.note(f"  backfill 16:00: {text}")
        return dag_run

    def _run(self, dag_id: str, hhmm: str) -> tuple[Any, str]:
        """A run and its note: state, duration, and the tasks that did not succeed."""
        assert self.market is not None
        started = time.monotonic()
        dag_run = self.market.run(dag_id, at(hhmm))
        details = ""
        for state in ("failed", "upstream_failed"):
            tasks = [
                task + (f" x{n}" if n > 1 else "")
                for task, task_states_ in task_states(dag_run).items()
                if (n := task_states_.count(state))
            ]
            details += f"; {state}: {', '.join(tasks)}" if tasks else ""
        return dag_run, f"{dag_run.state} ({time.monotonic() - started:.1f} s{details})"

    def finish(self, codes: Sequence[str]) -> Outcome:
        """What the drill left (read while the simulator still runs), with the secrets found in its
        logs; prints the report."""
        assert self.market is not None
        out, err = self.capfd.readouterr()
        log_dir = Path(os.environ["AIRFLOW_HOME"]) / "logs"
        files = [p for p in log_dir.rglob("*") if p.is_file() and p.stat().st_mtime >= self.started]
        logs = [out, err, self.caplog.text, *(p.read_text(errors="replace") for p in files)]
        wanted = {"app key": self.market.sim.appkey, "app secret": self.market.sim.appsecret}
        wanted |= {f"token {i}": token for i, token in enumerate(self.tokens, 1)}
        leaked = [name for name, value in wanted.items() if any(value in text for text in logs)]
        outcome = Outcome.of(self.market, codes, leaked=leaked)
        report = "\n".join(
            [
                f"\n=== drill {self.name}",
                *self.lines,
                *outcome.report(),
                f"  secrets scan: {len(out) + len(err):,} characters of task output,"
                f" {len(self.caplog.records):,} log records, {len(files)} log files; the app key, the app"
                f" secret and {len(self.tokens)} token(s) found: {', '.join(leaked) or 'none'}",
            ]
        )
        if self.show:
            with self.capfd.disabled():
                print(report, flush=True)
        else:  # stays with the test's captured output, shown when it fails
            print(report)
        return outcome


@dataclass(frozen=True)
class Outcome:
    """The table after a drill: each code's bars against the truth, its verification, the alerts."""

    stored: dict[str, int]
    truth: dict[str, int]
    equal: dict[str, bool]  # the stored day is the truth, bar for bar
    verification: dict[str, tuple[str, int, int, list[datetime]]]  # status, present, expected, missing
    gaps: dict[str, list[datetime]]  # every minute the live gap check alerted
    alerts: list[tuple[str, str | None, list[datetime] | None]]  # kind, code, minutes, in order
    leaked: list[str]  # the secrets found in the logs

    @classmethod
    def of(cls, market: Market, codes: Sequence[str], *, leaked: list[str]) -> Outcome:
        stored = market.stored(DAY, codes)
        truth = {code: market.sim.truth(code, DAY) for code in codes}
        verification = market.query(
            "SELECT stock_code, status, present, expected, missing_minutes FROM minute_verification"
            " WHERE trading_date = %s",
            DAY,
        )
        return cls(
            stored={code: len(bars) for code, bars in stored.items()},
            truth={code: len(bars) for code, bars in truth.items()},
            equal={code: stored[code] == truth[code] for code in codes},
            verification={code: tuple(rest) for code, *rest in verification},
            gaps=gap_alerts(market),
            alerts=market.query(
                "SELECT kind, stock_code, minutes FROM collection_alerts WHERE trading_date = %s ORDER BY id",
                DAY,
            ),
            leaked=leaked,
        )

    def healed(self) -> bool:
        """The promise kept the first way: every code equals the truth and is verified complete."""
        statuses = {status for status, *_ in self.verification.values()}
        return all(self.equal.values()) and statuses == {"complete"}

    def report(self) -> list[str]:
        lines = ["  table afterwards:"]
        for code, equal in self.equal.items():
            status, present, expected, missing = self.verification.get(code, ("not verified", 0, 0, []))
            lines.append(
                f"    {code}: {self.stored[code]} bars stored, {self.truth[code]} in the truth,"
                f" {'equal' if equal else 'DIFFERENT'}; verification {status} {present}/{expected}"
                + (f", missing {minute_ranges(missing)}" if missing else "")
            )
        for kind in sorted({kind for kind, _, _ in self.alerts}):
            of_kind = [(code, minutes) for k, code, minutes in self.alerts if k == kind]
            detail = "; ".join(
                (code or "all codes") + (f" {minute_ranges(minutes)}" if minutes else "")
                for code, minutes in of_kind
            )
            lines.append(f"  alerts {kind}: {len(of_kind)} ({detail})")
        if not self.alerts:
            lines.append("  alerts: none")
        return lines


@pytest.fixture
def drill(request, capfd, caplog, monkeypatch, simulated_market) -> Drill:
    """A drill: its market (``drill.simulate``), its notes, and its report (``drill.finish``)."""
    tokens: list[str] = []
    issue = endpoints.issue_token

    # The token store keeps tokens encrypted and the simulator does not list them: the plaintext
    # of every token the hook obtains is taken on its way in (a hook hands its client the module's
    # function when it makes the client, so patching the module attribute reaches every later hook).
    def recording_issue(client):
        issued = issue(client)
        tokens.append(issued.access_token)
        return issued

    monkeypatch.setattr(endpoints, "issue_token", recording_issue)
    caplog.set_level(logging.DEBUG)  # every record, whatever level the loggers would show
    show = request.config.getoption("capture") == "no"
    return Drill(request.node.name, capfd, caplog, simulated_market, show, tokens)


def states(dag_runs: dict[str, Any]) -> dict[str, str]:
    return {hhmm: dag_run.state for hhmm, dag_run in dag_runs.items()}


def tis(dag_run: Any, task_id: str) -> list[Any]:
    """The task instances of one task of a run (one per mapped index)."""
    return [ti for ti in dag_run.get_task_instances() if ti.task_id == task_id]


def gap_alerts(market: Market) -> dict[str, list[datetime]]:
    """Every minute the live gap check alerted so far, per code."""
    alerted: dict[str, list[datetime]] = {}
    for code, minutes in market.query("SELECT stock_code, minutes FROM collection_alerts WHERE kind = 'gap'"):
        alerted[code] = sorted([*alerted.get(code, []), *minutes])
    return alerted


def minute_ranges(minutes: Sequence[datetime]) -> str:
    """Minutes as runs of consecutive minutes: ``09:30, 10:21-10:35``."""
    runs: list[list[datetime]] = []
    for minute in sorted(minutes):
        if runs and minute - runs[-1][-1] == timedelta(minutes=1):
            runs[-1].append(minute)
        else:
            runs.append([minute])
    return ", ".join(f"{run[0]:%H:%M}" + (f"-{run[-1]:%H:%M}" if len(run) > 1 else "") for run in runs)


def naive_minutes(first: str, last: str) -> list[datetime]:
    """Every minute from ``first`` to ``last`` (HH:MM, both included), naive KST as stored."""
    start, end = at(first).replace(tzinfo=None), at(last).replace(tzinfo=None)
    return [start + timedelta(minutes=i) for i in range((end - start) // timedelta(minutes=1) + 1)]


# --- the drills ---------------------------------------------------------------------------------


def test_api_outage_storms_and_damaged_bodies(drill, monkeypatch):
    """5xx for three minutes (the runs fail, the gap is alerted live), then EGW00201 storms and
    malformed and truncated bodies through a minute run and the backfill."""
    with drill.simulate(TWO_CODES) as market:
        drill.runs("09:30")
        drill.note("  injected: every data call answers HTTP 500/502/503 (http_5xx 1.0) at 09:31-09:33")
        market.sim.set_faults({"http_5xx": 1.0})
        with monkeypatch.context() as outage:
            # The outage outlasts any retry budget; the default one (12 attempts up to 8 s apart,
            # ~28 s a code, then two task retries 5 s apart) would only take longer to say so.
            short_budget = partial(KisHook, max_attempts=2, backoff_max=0.05)
            outage.setattr(task_context, "kis_hook", short_budget)
            fetch = market.dagbag.get_dag("kis_minute_bars").get_task("fetch_recent_bars")
            outage.setattr(fetch, "retry_delay", timedelta(0))
            outage_runs = drill.runs("09:31", "09:32", "09:33")
        fetch_tries = {
            hhmm: sorted((ti.state, ti.try_number) for ti in tis(run, fetch.task_id))
            for hhmm, run in outage_runs.items()
        }
        alerted_live = gap_alerts(market)
        drill.note(
            f"  each code's fetch in them (state, tries): {fetch_tries['09:31'][0]}; gaps alerted live: "
            + "; ".join(f"{code} {minute_ranges(minutes)}" for code, minutes in alerted_live.items())
        )
        storms = {"rate_storm": 0.3, "malformed_json": 0.05, "truncated_body": 0.05}
        drill.note(f"  injected from 09:34 on: {storms} (probabilities per data call)")
        market.sim.set_faults(storms)
        storm_run = states(drill.runs("09:34"))
        dag_run = drill.backfill()
        drill.note(f"  faults the simulator injected: {market.sim.counters()['faults_injected']}")
        outcome = drill.finish(TWO_CODES)

    assert set(states(outage_runs).values()) == {"failed"}
    # Each code's fetch retried twice, then failed.
    assert all(tries == [("failed", 3)] * len(TWO_CODES) for tries in fetch_tries.values())
    # Alerted live by the 09:33 run (a closed minute still missing two minutes later), each code once.
    assert alerted_live == {code: naive_minutes("09:30", "09:30") for code in TWO_CODES}
    assert storm_run == {"09:34": "success"}
    assert dag_run.state == "success" and outcome.healed()
    assert outcome.leaked == []


def test_token_throttled_at_the_open_and_expired_mid_session(drill, monkeypatch):
    """EGW00133 on the first issuance of the day, then every token expiring at 10:16."""
    with drill.simulate(TWO_CODES, token_throttle_seconds=2.5) as market:
        # Another client of the same app key takes a token and revokes it (as KIS's sample scripts
        # do on exit) right before the hook's first issuance, so that this issuance falls inside the
        # throttle window whatever Airflow's start-up took: it is EGW00133, by construction.
        credentials = {"appkey": market.sim.appkey, "appsecret": market.sim.appsecret}
        oauth = f"{market.sim.base_url}/oauth2"
        recording_issue, other_client = endpoints.issue_token, []

        def other_client_first(client):
            if not other_client:
                grant = {"grant_type": "client_credentials", **credentials}
                token = httpx.post(f"{oauth}/tokenP", json=grant).json()["access_token"]
                other_client.append(token)
                drill.tokens.append(token)
                httpx.post(f"{oauth}/revokeP", json={**credentials, "token": token}).raise_for_status()
            return recording_issue(client)

        monkeypatch.setattr(endpoints, "issue_token", other_client_first)
        drill.note(
            "  injected: another client issued and revoked a token just before the hook's first issuance"
            " (issuance throttled for 2.5 s; the hook waits 1 s between issues)"
        )
        morning = states(drill.runs("09:01", "09:30", "10:00"))
        drill.note("  injected: every token expired at 10:16:30")
        market.sim.set_now(at("10:16") + timedelta(seconds=30))
        market.sim.expire_tokens()
        later = states(drill.runs("10:17"))
        dag_run = drill.backfill()
        counters = market.sim.counters()
        token_calls, hook_tokens = counters["requests_by_endpoint"]["tokenP"], drill.tokens[1:]
        drill.note(
            f"  token endpoint: {token_calls} calls, {counters['tokens_issued']} tokens issued"
            f" ({len(hook_tokens)} to the hook), so {token_calls - 1 - len(hook_tokens)} EGW00133 answers"
        )
        outcome = drill.finish(TWO_CODES)

    assert set(morning.values()) == set(later.values()) == {"success"}
    assert len(set(hook_tokens)) == len(hook_tokens) == 2  # one at the open, one after the expiry
    assert token_calls > 1 + len(hook_tokens)  # throttled issuances were waited out, not fatal
    assert dag_run.state == "success" and outcome.healed()
    assert outcome.gaps == {}
    assert outcome.leaked == []


def test_scheduler_down_for_20_and_for_44_minutes(drill):
    """No minute runs 10:01-10:20 (within the 30 bars a run re-reads), then none 10:22-11:05 (beyond)."""
    with drill.simulate(TWO_CODES) as market:
        drill.runs("09:30", "10:00")
        drill.note("  injected: scheduler down 10:01-10:20 (no minute runs)")
        drill.runs("10:21")
        after_20 = gap_alerts(market)
        drill.note(f"  after it: gaps alerted {after_20 or 'none'} (the 10:21 run re-read 09:51-10:20)")
        drill.note("  injected: scheduler down 10:22-11:05 (no minute runs)")
        drill.runs("11:06")
        after_44 = gap_alerts(market)
        drill.note("  gaps alerted: " + "; ".join(f"{c} {minute_ranges(m)}" for c, m in after_44.items()))
        dag_run = drill.backfill()
        outcome = drill.finish(TWO_CODES)

    assert after_20 == {}
    # The 11:06 run stored 10:36-11:05: exactly 10:21-10:35 were missing, alerted by that run.
    assert after_44 == {code: naive_minutes("10:21", "10:35") for code in TWO_CODES}
    assert dag_run.state == "success" and outcome.healed()
    assert outcome.leaked == []


def test_a_code_halted_for_an_hour(drill):
    """000660 halted 10:00-11:00: an expected absence, reported as such, not a gap."""
    faults = {"halts": [{"code": "000660", "start": "10:00", "end": "11:00", "date": DAY.isoformat()}]}
    with drill.simulate(TWO_CODES, faults=faults) as market:
        drill.note(f"  injected: {faults}")
        during = states(drill.runs("10:31"))
        dag_run = drill.backfill()
        absences = [
            datetime.fromisoformat(absence["minute"]).replace(tzinfo=None)
            for absence in market.sim.absences("000660", DAY)
        ]
        outcome = drill.finish(TWO_CODES)

    assert during == {"10:31": "success"}
    assert all(outcome.equal.values())
    assert naive_minutes("10:00", "10:59") == [minute for minute in absences if minute.hour == 10]
    explained = ("complete_with_explained_absences", 381 - len(absences), 381, absences)
    assert outcome.verification["000660"] == explained
    assert outcome.verification["005930"][0] == "complete"
    assert "incomplete_day" not in {kind for kind, _, _ in outcome.alerts}
    assert dag_run.state == "success"
    assert outcome.leaked == []


def test_a_delisted_code(drill):
    """999990 unknown to KIS: alerted once, left out for the rest of the day, never retried."""
    with drill.simulate([*TWO_CODES, "999990"], faults=DELISTED) as market:
        drill.note(f"  injected: {DELISTED} (KIS answers OPSQ1001)")
        first = drill.runs("10:31")["10:31"]
        fetches = tis(first, "fetch_recent_bars")
        unknown_tries = [(ti.state, ti.try_number) for ti in fetches if ti.rendered_map_index == "999990"]
        drill.note(f"  the fetch of 999990 in it (state, tries): {unknown_tries}")
        before = market.data_requests()
        later = states(drill.runs("10:32"))
        asked_later = market.data_requests() - before
        dag_run = drill.backfill()
        backfilled = sorted(ti.rendered_map_index for ti in tis(dag_run, "fetch_session_bars"))
        drill.note(f"  data requests of the 10:32 run: {asked_later}; the backfill fetched {backfilled}")
        outcome = drill.finish(TWO_CODES)

    assert unknown_tries == [("failed", 1)]  # failed without retries: it will not be known a minute later
    assert later == {"10:32": "success"} and asked_later == len(TWO_CODES)
    assert backfilled == sorted(TWO_CODES) and dag_run.state == "success"
    assert outcome.healed()  # and the delisted code is not verified as a gap
    assert [(kind, code) for kind, code, _ in outcome.alerts if code == "999990"] == [("unknown_code", "999990")]
    assert outcome.leaked == []


def test_a_delisted_code_is_not_also_alerted_as_a_gap(drill):
    """The run that finds 999990 unknown reports it once, as unknown, and not also as missing minutes."""
    with drill.simulate([*TWO_CODES, "999990"], faults=DELISTED):
        drill.note(f"  injected: {DELISTED} (KIS answers OPSQ1001)")
        drill.runs("09:30")
        outcome = drill.finish(TWO_CODES)

    assert [kind for kind, _, _ in outcome.alerts] == ["unknown_code"]


def test_minute_upserts_during_the_backfill(drill):
    """The minute DAG's upsert and the backfill's, at the same time for the same minutes.

    Two ``dag.test()`` cannot run at once in one process (Airflow's in-process task runner installs
    signal handlers and uses one module-level supervisor channel: the second run's tasks fail), so
    the minute DAG's side is its upsert, the statement that meets the backfill's in the table: the
    15:31 run's batch and the whole day, each looped from its own connection, while a real backfill
    run upserts the same minutes.
    """
    with drill.simulate(TWO_CODES, now=at("16:00").isoformat()) as market:
        day_batch = [bar for code in TWO_CODES for bar in market.sim.truth(code, DAY)]
        minute_batch = [bar for bar in day_batch if at("15:01") <= bar.minute <= at("15:30")]
        stale = [replace(bar, volume=bar.volume + 1) for bar in minute_batch if bar.minute <= at("15:19")]
        with psycopg.connect(market.dsn) as conn:
            schema.migrate(conn, today=DAY)
            storage.upsert_bars(conn, stale)
        drill.note(
            f"  injected: {len(stale)} bars of 15:01-15:19 stored with a stale volume; the 15:31 run's batch"
            f" ({len(minute_batch)} bars) and the day ({len(day_batch)}) upserted in loops from two"
            " connections during the backfill run"
        )
        done = threading.Event()
        writers = [UpsertLoop(market.dsn, minute_batch, done), UpsertLoop(market.dsn, day_batch, done)]
        for writer in writers:
            writer.start()
        try:
            dag_run = drill.backfill()
        finally:
            done.set()
            for writer in writers:
                writer.join()
        (upsert,) = tis(dag_run, "upsert_bars")
        window = (upsert.start_date.timestamp(), upsert.end_date.timestamp())
        overlapping = [sum(window[0] <= t <= window[1] for t in writer.times) for writer in writers]
        rows = market.query(
            "SELECT count(*), count(DISTINCT (stock_code, datetime)), sum(revision),"
            " count(*) FILTER (WHERE revision = 1) FROM stock_prices_minute"
        )
        drill.note(
            f"  upserts: 15:31 batch {len(writers[0].times)}, day {len(writers[1].times)}, of which during"
            f" the backfill's upsert_bars task: {overlapping}; errors: {[w.errors for w in writers]}"
        )
        drill.note("  rows, distinct (code, minute), sum(revision), rows revised once: " + str(rows[0]))
        outcome = drill.finish(TWO_CODES)

    assert [writer.errors for writer in writers] == [[], []]
    assert all(overlapping), "the writers did not overlap the backfill's upsert"
    assert dag_run.state == "success" and outcome.healed()
    # No duplicates; each stale bar updated exactly once, every other bar inserted once and never rewritten.
    assert rows == [(len(day_batch), len(day_batch), len(stale), len(stale))]
    assert outcome.leaked == []


class UpsertLoop(threading.Thread):
    """Upserts one batch again and again from its own connection until ``done``."""

    def __init__(self, dsn: str, bars: list[Bar], done: threading.Event) -> None:
        super().__init__(daemon=True)
        self.dsn, self.bars, self.done = dsn, bars, done
        self.times: list[float] = []  # when each upsert committed
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self.done.is_set():
                    storage.upsert_bars(conn, self.bars)
                    self.times.append(time.time())
        except psycopg.Error as err:  # a deadlock or a unique violation would be the finding
            self.errors.append(repr(err))


# --- bench only: the market database stopped ----------------------------------------------------


@pytest.mark.skipif(
    not os.environ.get(OUTAGE_STATE_DIR_ENV),
    reason="stops a PostgreSQL cluster for two minutes: run by bench/fault_drills.py",
)
def test_market_database_outage(drill, monkeypatch):
    """The market database (bars, alerts, and the hook's token and limiter state) stopped for two
    minutes after the 10:30 run, then started again: a cluster of its own, never the shared one."""
    cluster = PrivateCluster(Path(os.environ[OUTAGE_STATE_DIR_ENV]), free_port())
    try:
        cluster.command("start")
        dsn = cluster.command("createdb", "kis_market_outage")
        with drill.simulate(TWO_CODES) as shared:
            monkeypatch.setenv("AIRFLOW_CONN_KIS_MARKET_DB", dsn)
            drill.market = replace(shared, dsn=dsn)
            drill.runs("09:30", "10:00", "10:30")
            cluster.command("stop")
            stopped = time.monotonic()
            drill.note(f"  injected: the market database (own cluster, port {cluster.port}) stopped at 10:30")
            during = states(drill.runs("10:31", "10:32"))
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
            cluster.command("start")
            drill.note(f"  injected: started again {time.monotonic() - stopped:.0f} s later")
            after = states(drill.runs("10:33"))
            dag_run = drill.backfill()
            outcome = drill.finish(TWO_CODES)
    finally:
        cluster.command("stop")

    assert set(during.values()) == {"failed"}
    assert after == {"10:33": "success"}  # its 30 bars cover what the failed runs missed
    assert dag_run.state == "success" and outcome.healed()
    assert outcome.gaps == {}
    assert outcome.leaked == []


@dataclass(frozen=True)
class PrivateCluster:
    """A PostgreSQL cluster of devtools.localpg under ``state_dir``, driven by its command line."""

    state_dir: Path
    port: int

    def command(self, *args: str) -> str:
        env = {**os.environ, "KIS_STATE_DIR": str(self.state_dir), "KIS_PG_PORT": str(self.port)}
        result = subprocess.run(
            [sys.executable, "-m", "devtools.localpg", *args],
            env=env, cwd=airflow_env.REPO, check=True, capture_output=True, text=True, timeout=120,
        )
        return result.stdout.strip()


