"""Airflow plugin entry point: the minute-status API and the collection dashboard, under ``/kis``.

Airflow's plugin manager imports every ``.py`` file of the plugins folder as a top-level module,
which is why this file sits here and the code lives in the ``kis`` package (ignored by the plugin
manager through ``plugins/.airflowignore``). The API server serves the app; the UI shows the
dashboard in its navigation as an external view (an iframe of the same origin, so the login
cookie reaches the app).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from kis.web.app import create_app


class KisWebPlugin(AirflowPlugin):
    name = "kis_minute_bars_web"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/kis", "name": "KIS minute bars"}]
    external_views = [
        {
            "name": "Minute bars",
            "href": "/kis/dashboard",
            "destination": "nav",
            "url_route": "kis-dashboard",
            # Its own entry in the side bar rather than one more item of the Plugins menu.
            "nav_top_level": True,
        }
    ]
