"""The web side of the package: the minute-status API and the collection dashboard (an Airflow plugin
app, registered by ``plugins/kis_web_plugin.py``)."""
