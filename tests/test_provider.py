"""The project as an Airflow provider: the ``kis`` connection type, its form, and its Test button.

Airflow's own machinery is the judge: ProvidersManager (what every component registers), the API
server's hook metadata (what the UI's form is built from), ``airflow connections test`` (the CLI),
and the UI itself in headless Chromium against a real API server and the simulator.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest
from browser import Browser, Secret, browser_fixture, log_in  # noqa: F401 - the browser fixture
from kis.hook import KisHook
from kis.provider import base_url
from kis.provider import CONN_FIELDS, ENDPOINTS

from devtools import airflow_env, localpg
from devtools.local_airflow import running_airflow
from devtools.net import free_port
from simulator.testing import SimulatorHandle, run_simulator

OUTPUT_DIR = airflow_env.REPO / "test-output"
WRONG_SECRET = "WRONG-APPSECRET-0123456789"


# --- registration and the form ---------------------------------------------------------------------


def test_airflow_knows_the_kis_connection_type_and_its_hook() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "kis-minute-bars" in manager.providers
    manager.initialize_providers_hooks()
    hook = manager._hooks_lazy_dict["kis"]  # what Connection.get_hook() resolves a kis connection with
    assert (hook.hook_class_name, hook.hook_name, hook.connection_type) == ("kis.hook.KisHook", "KIS Open API", "kis")
    assert hook.connection_testable


def _kis_form() -> Any:
    """The kis entry of what the API server sends the UI to build the connection form."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    return next(meta for meta in HookMetaService.hook_meta_data() if meta.connection_type == "kis")


def test_the_form_has_the_fields_of_a_kis_connection() -> None:
    form = _kis_form()
    standard = form.standard_fields
    assert (standard.login.title, standard.password.title, standard.host.title) == ("App key", "App secret", "API URL")
    assert standard.url_schema.hidden  # the scheme is part of the API URL
    for url, port in ENDPOINTS.values():
        assert url in standard.host.placeholder and str(port) in standard.port.placeholder
    fields = {name: field["schema"] for name, field in form.extra_fields.items()}
    assert {name: schema["title"] for name, schema in fields.items()} == {
        "environment": "Environment",
        "custtype": "Customer type",
        "rate_limit": "Rate limit",
        "state_conn_id": "State database connection",
    }
    assert fields["environment"]["enum"] == ["real", "mock"]  # a select
    assert fields["custtype"]["enum"] == ["P", "B"]
    assert "integer" in fields["rate_limit"]["type"]


def test_the_hook_gives_airflow_before_3_2_the_same_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """``get_connection_form_widgets`` / ``get_ui_field_behaviour``, read through the stand-ins of
    WTForms and FAB that Airflow's API server uses when they are not installed (they are not here)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService as Meta
    from airflow.providers_manager import ConnectionFormWidgetInfo

    stand_ins = {
        "wtforms": {"StringField": Meta.MockStringField, "IntegerField": Meta.MockIntegerField},
        "wtforms.validators": {"Optional": Meta.MockOptional, "any_of": Meta.MockEnum},
        "flask_babel": {"lazy_gettext": str},
        "flask_appbuilder": {},
        "flask_appbuilder.fieldwidgets": {"BS3TextFieldWidget": Meta.MockAnyWidget},
    }
    for name, attributes in stand_ins.items():
        module = ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)
    widgets = {
        f"extra__kis__{name}": ConnectionFormWidgetInfo("KisHook", "kis-minute-bars", field, name, False)
        for name, field in KisHook.get_connection_form_widgets().items()
    }
    legacy = Meta._convert_extra_fields(widgets)["kis"]
    current = _kis_form().extra_fields
    assert set(legacy) == set(current) == set(CONN_FIELDS)
    for name, field in legacy.items():
        for key in ("title", "type", "enum"):
            assert field["schema"].get(key) == current[name]["schema"].get(key), (name, key)
        assert (field["value"], field["description"]) == (current[name]["value"], current[name]["description"])
    behaviour = KisHook.get_ui_field_behaviour()
    assert behaviour["relabeling"] == {"host": "API URL", "login": "App key", "password": "App secret"}
    assert behaviour["hidden_fields"] == ["schema"]


@pytest.mark.parametrize(
    ("conn_type", "host", "schema", "port", "url"),
    [
        ("kis", "https://openapi.koreainvestment.com", None, 9443, "https://openapi.koreainvestment.com:9443"),
        ("kis", "openapivts.koreainvestment.com", None, 29443, "https://openapivts.koreainvestment.com:29443"),
        ("kis", "http://127.0.0.1:8765/", None, None, "http://127.0.0.1:8765"),
        ("http", "127.0.0.1", "http", 8765, "http://127.0.0.1:8765"),
        ("http", "openapi.koreainvestment.com", "https", 9443, "https://openapi.koreainvestment.com:9443"),
    ],
)
def test_the_api_url_from_either_connection_type(conn_type, host, schema, port, url) -> None:
    from airflow.models.connection import Connection

    assert base_url(Connection(conn_type=conn_type, host=host, schema=schema, port=port)) == url


# --- KisHook.test_connection against the simulator ----------------------------------------------------


def test_the_test_gets_a_token_and_one_page_of_bars(point_kis_at: Callable[..., None]) -> None:
    with run_simulator() as sim:
        point_kis_at(sim, rate_limit=None)  # a form field left empty: the default applies
        ok, message = KisHook().test_connection()
        assert ok, message
        assert f"KIS at http://{sim.host}:{sim.port} (real) answered" in message
        assert "30 minute bars of 005930" in message and "2026-11-25 10:31 KST" in message
        # A second test takes the token the first one stored for every worker.
        assert KisHook().test_connection()[0]
        assert sim.counters()["tokens_issued"] == 1


@pytest.mark.parametrize("token_stored", [False, True], ids=["token-refused", "data-call-refused"])
def test_a_wrong_app_secret_is_named_not_shown(
    point_kis_at: Callable[..., None], caplog: pytest.LogCaptureFixture, token_stored: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    with run_simulator() as sim:
        point_kis_at(sim)
        if token_stored:  # the token is shared per app key: the data call is the one refused
            assert KisHook().test_connection()[0]
        point_kis_at(_with_secret(sim, WRONG_SECRET))
        sim.reset_counters()
        ok, message = KisHook().test_connection()
        requests = sim.counters()["requests_by_endpoint"]
    assert not ok
    assert "EGW00105" in message and "AppSecret" in message
    assert WRONG_SECRET not in message and WRONG_SECRET not in caplog.text
    assert sum(requests.values()) == 1, requests  # refused credentials are not retried


def test_a_missing_state_database_is_named(point_kis_at: Callable[..., None], monkeypatch) -> None:
    with run_simulator() as sim:
        point_kis_at(sim)
        monkeypatch.delenv("AIRFLOW_CONN_KIS_MARKET_DB")
        ok, message = KisHook().test_connection()
    assert not ok
    assert "state database 'kis_market_db' (extra state_conn_id)" in message


def test_an_http_connection_still_works(monkeypatch, point_kis_at: Callable[..., None]) -> None:
    with run_simulator() as sim:
        point_kis_at(sim)
        monkeypatch.setenv(
            "AIRFLOW_CONN_KIS_DEFAULT",
            json.dumps({"conn_type": "http", "host": sim.host, "port": sim.port, "schema": "http",
                        "login": sim.appkey, "password": sim.appsecret, "extra": {"environment": "real"}}),
        )
        with KisHook() as hook:
            assert hook.test_connection()[0]
            bars = hook.recent_bars("005930", until=sim.now().replace(second=0, microsecond=0))
    assert len(bars.bars) == 30


def _with_secret(sim: SimulatorHandle, secret: str) -> SimpleNamespace:
    """The same simulator, as a connection with another app secret would reach it."""
    return SimpleNamespace(host=sim.host, port=sim.port, mode=sim.mode, appkey=sim.appkey, appsecret=secret)


# --- the CLI and the UI's Test button -------------------------------------------------------------------


@pytest.mark.slow
def test_airflow_connections_test_on_the_cli(airflow_db, point_kis_at: Callable[..., None]) -> None:
    with run_simulator() as sim:
        point_kis_at(sim)
        result = subprocess.run(
            [str(airflow_env.VENV_BIN / "airflow"), "connections", "test", "kis_default"],
            capture_output=True, text=True, timeout=180, env=dict(os.environ), check=False,
        )
        counters = sim.counters()
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Connection success!" in result.stdout  # the CLI prints the message on failures only
    assert counters["tokens_issued"] == 1
    assert sum(counters["requests_by_endpoint"].values()) == 2, counters  # the token and one page


@pytest.fixture(scope="module")
def ui(pg_cluster: localpg.Cluster) -> Iterator[dict[str, Any]]:
    """An API server (no kis_default of its own: the test adds it) and a simulator beside it."""
    port = free_port()
    env = airflow_env.environment(f"providertest_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}", api_port=port)
    localpg.create_database(env["AIRFLOW_CONN_KIS_MARKET_DB"].rsplit("/", 1)[1], drop_existing=True)
    base = f"http://127.0.0.1:{port}"
    with run_simulator() as sim, running_airflow(env, components=("api-server",)):
        login = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": airflow_env.admin_password()})
        assert login.status_code == 201, login.status_code
        token = Secret(login.json()["access_token"])
        yield {"base": base, "token": token, "sim": sim}
        httpx.delete(f"{base}/api/v2/connections/kis_default", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.stack
def test_the_kis_connection_added_in_the_ui_passes_its_test(ui: dict[str, Any], browser: Browser) -> None:
    base, sim = ui["base"], ui["sim"]
    log_in(browser, base, ui["token"])
    browser.call("Page.navigate", url=f"{base}/connections")
    browser.click(_button("Add Connection"))
    browser.type_into("document.querySelector('[role=dialog] input[name=connection_id]')", "kis_default")
    browser.choose("document.querySelectorAll('[role=dialog] input')[1]", "KIS Open API")
    browser.wait_for("!!document.querySelector('[role=dialog] input[name=host]')")
    for name, value in (("host", f"http://{sim.host}"), ("port", str(sim.port)), ("login", sim.appkey),
                        ("password", sim.appsecret)):
        browser.type_into(f"document.querySelector('[role=dialog] input[name={name}]')", value)
    browser.screenshot(OUTPUT_DIR / "kis-connection-form.png")

    browser.click(_button("Extra Fields", "[role=dialog] "))
    browser.choose("document.querySelector('[role=dialog] input[name=element_environment]').parentElement"
                   ".querySelector('input:not([type=hidden])')", "real")
    browser.type_into("document.querySelector('[role=dialog] input[name=element_rate_limit]')", "5")
    browser.screenshot(OUTPUT_DIR / "kis-connection-form-extra.png")
    browser.click(_button("Save", "[role=dialog] "))
    browser.wait_for("!document.querySelector('[role=dialog]') && !!document.querySelector("
                     "'button[aria-label=\"Test Connection\"]')")

    # What the form stored: the hook's extras under their plain names.
    stored = httpx.get(f"{base}/api/v2/connections/kis_default", headers={"Authorization": f"Bearer {ui['token']}"})
    assert stored.json()["conn_type"] == "kis"
    assert json.loads(stored.json()["extra"]) == {
        "environment": "real", "custtype": "P", "rate_limit": 5, "state_conn_id": "kis_market_db"
    }

    browser.click("document.querySelector('button[aria-label=\"Test Connection\"]')")
    toast = browser.wait_for("Array.from(document.querySelectorAll('[data-scope=toast]')).map(t => t.innerText)"
                             ".find(text => text.includes('Test Connection')) || ''")
    browser.screenshot(OUTPUT_DIR / "kis-connection-test.png")
    assert "Test Connection Successful" in toast, toast
    assert f"KIS at http://{sim.host}:{sim.port} (real) answered: a token, and 30 minute bars of 005930" in toast
    assert sim.appsecret not in toast
    assert browser.errors == []


def _button(text: str, scope: str = "") -> str:
    """JS finding the button whose text is ``text`` (within ``scope``, a CSS selector prefix)."""
    return f"Array.from(document.querySelectorAll('{scope}button')).find(b => b.innerText.trim() === {text!r})"
