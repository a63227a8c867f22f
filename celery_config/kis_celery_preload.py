"""Loads the plugins in a Celery worker before its pool forks (listed in ``kis_celery.PRELOAD``).

Each task process loads the plugins itself (for their macros and listeners) unless the process it
was forked from has: the Task SDK caches them once per process (``airflow.sdk.plugins_manager``).
Loaded here, every task of the worker finds them loaded. The plugin manager executes each file
of plugins/ again under its own name, ``kis_task_preload`` included, which then costs nothing: its
imports are done and its computations are cached.
"""

from airflow.sdk.plugins_manager import integrate_macros_plugins

integrate_macros_plugins()
