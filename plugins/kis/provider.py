"""This package as an Airflow provider: the ``kis`` connection type, its form and its hook.

pyproject.toml registers :func:`get_provider_info` under the ``apache_airflow_provider`` entry
point. Airflow's ProvidersManager reads it without importing the hook, and the UI (3.2 and later)
builds the connection form from its ``conn-fields`` and ``ui-field-behaviour``; older Airflow
versions ask the hook's ``get_connection_form_widgets`` and ``get_ui_field_behaviour``, which
:class:`kis.hook.KisHook` derives from the same definitions below.

The form's own fields land in the connection's extra under their plain names (``environment``,
``custtype``, ...), which is where the hook reads them (docs/hook.md); its host, schema and port
make the server's URL (:func:`base_url`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

PACKAGE_NAME = "kis-minute-bars"  # pyproject.toml's [project] name: Airflow checks they agree
CONN_TYPE = "kis"
HOOK_NAME = "KIS Open API"
HOOK_CLASS_NAME = "kis.hook.KisHook"

#: The real and the mock (paper-trading) endpoints: the host and port placeholders of the form.
ENDPOINTS = {"real": ("https://openapi.koreainvestment.com", 9443), "mock": ("https://openapivts.koreainvestment.com", 29443)}


def _select(label: str, description: str, options: dict[str, str]) -> dict[str, Any]:
    """A field of the form chosen from ``options`` (value: what the select shows), the first by default."""
    schema = {"type": ["string", "null"], "enum": list(options), "values_display": options, "default": next(iter(options))}
    return {"label": label, "description": description, "schema": schema}


#: The form's own fields, as provider.yaml's ``conn-fields``: label, description, JSON schema.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "environment": _select(
        "Environment",
        "The account the app key belongs to: real, or mock (paper trading).",
        {"real": "real", "mock": "mock (paper trading)"},
    ),
    "custtype": _select(
        "Customer type",
        "KIS's custtype header: P for a personal account, B for a corporate one.",
        {"P": "P (personal)", "B": "B (corporate)"},
    ),
    "rate_limit": {
        "label": "Rate limit",
        "description": "Requests per second of the app key, shared by every worker; empty: 18 real, 1 mock.",
        "schema": {"type": ["integer", "null"], "minimum": 1},
    },
    "state_conn_id": {
        "label": "State database connection",
        "description": "The Postgres connection keeping the shared token and rate limiter (the market database).",
        "schema": {"type": ["string", "null"], "default": "kis_market_db"},
    },
}

#: The standard fields: the app key and secret in login and password, the scheme in the host.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema"],
    "relabeling": {"host": "API URL", "login": "App key", "password": "App secret"},
    "placeholders": {
        "host": " or ".join(f"{url} ({name})" for name, (url, _) in ENDPOINTS.items()),
        "port": " or ".join(f"{port} ({name})" for name, (_, port) in ENDPOINTS.items()),
        "login": "the app key of the KIS Developers portal",
        "password": "the app secret of the same app",
    },
}


def base_url(conn: Any) -> str:
    """``scheme://host:port`` of a connection: the scheme from the host (as the form's placeholder
    shows it), else ``schema`` (as the http provider reads it), else https for a ``kis`` connection
    and http for an ``http`` one; the port from ``port`` unless the host has one. Here, beside the
    form, and not in :mod:`kis.hook`: the stock masters' hook reads its ``http`` connection the same
    way without importing the API's client, token store and endpoints."""
    host = (conn.host or "").rstrip("/")
    if "://" not in host:
        host = f"{conn.schema or ('https' if conn.conn_type == CONN_TYPE else 'http')}://{host}"
    if conn.port and urlsplit(host).port is None:
        host = f"{host}:{conn.port}"
    return host


def get_provider_info() -> dict[str, Any]:
    """What ProvidersManager validates against ``airflow/provider_info.schema.json``."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "KIS minute bars",
        "description": "The KIS Open API (Korea Investment & Securities) as an Airflow connection type.",
        "hooks": [{"integration-name": HOOK_NAME, "python-modules": ["kis.hook"]}],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": HOOK_CLASS_NAME,
                "hook-name": HOOK_NAME,
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
