"""Airflow plugin entry point: the minute-status API and the collection dashboard, under ``/kis``.

Airflow's plugin manager imports every ``.py`` file of the plugins folder as a top-level module,
which is why this file sits here and the code lives in the ``kis`` package (ignored by the plugin
manager through ``plugins/.airflowignore``). The API server serves the app; the UI shows the
dashboard in its navigation as an external view (an iframe of the same origin, so the login
cookie reaches the app).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin


class AppOnFirstRequest:
    """The plugin's ASGI app, built when the API server routes it its first request.

    Every Airflow process loads the plugins, and a task process does so for each task (for the
    listeners); only the API server serves the app. Built here, at import, the FastAPI app cost
    every task of the minute DAG about 20 ms of CPU for nothing.
    """

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            from kis.web.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class KisWebPlugin(AirflowPlugin):
    name = "kis_minute_bars_web"
    fastapi_apps = [{"app": AppOnFirstRequest(), "url_prefix": "/kis", "name": "KIS minute bars"}]
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
