"""Preloads the collection code into every Airflow component, the scheduler included.

The plugin manager imports each file of this folder when a component starts, and the scheduler's
LocalExecutor forks its worker processes after that: every task process then starts with the code
its task runs already imported, instead of importing it again. Measured with
bench/bench_minute_run.py on an idle machine (50 codes, one task per code): 17.3 instead of 20.0
CPU-seconds a run, p95 10.1 instead of 11.6 s (bench/README.md).
"""

import kis.collection  # noqa: F401
import kis.hook  # noqa: F401
