# The two commands of the README, and the helpers around them.
.PHONY: demo test test-fast install lock bench bench-market airflow simulator check-first-start

demo:  ## run a simulated trading day end to end and print its verification report; DEMO_ARGS="--venues unified" for the whole 08:00-20:00 day
	@scripts/demo.sh $(DEMO_ARGS)

test:  ## run the whole test suite (what CI runs)
	@scripts/test.sh

test-fast:  ## the tests of the development loop: parsing, calendar, storage, the web API, the hook and the simulator; no DAG run, no Airflow component
	@scripts/test.sh --fast

install:  ## create .venv with the pinned packages
	@scripts/bootstrap.sh

bench:  ## the short benchmarks and the goals of issue 21, met or missed: the minute run (5 runs per shape) and the storage; about 6 minutes on 2 cores, on a quiet machine
	@scripts/bootstrap.sh && .venv/bin/python bench/bench_minute_run.py --runs 5 && .venv/bin/python bench/bench_storage.py

bench-market:  ## the whole market (issue 23): a day's archive of ~2,600 codes and 1,800 codes live on 3 app keys under the scheduler, a month of the market in PostgreSQL; each goal met or missed; about 17 minutes on 2 cores, on a quiet machine
	@scripts/bootstrap.sh && .venv/bin/python bench/bench_market.py $(BENCH_ARGS)

lock:  ## re-resolve requirements.txt and requirements-test.txt into constraints.txt
	@scripts/lock.sh

airflow:  ## a local Airflow on 127.0.0.1 (UI, scheduler, dag-processor, triggerer) with the simulator; API_PORT=8080 and SIMULATOR_PORT=9443 move them; KIS_CELERY_WORKERS=N for Celery; REPLAY=YYYY-MM-DD[THH:MM] plays a past session live; AIRFLOW_ARGS="--help" for every option; Ctrl-C stops it
	@scripts/bootstrap.sh && .venv/bin/python -m devtools.local_airflow $(if $(REPLAY),--replay $(REPLAY)) $(if $(API_PORT),--api-port $(API_PORT)) $(if $(SIMULATOR_PORT),--simulator-port $(SIMULATOR_PORT)) $(AIRFLOW_ARGS)

simulator:  ## the KIS simulator alone on 127.0.0.1:8765; SIM_ARGS="--help" for its options
	@scripts/bootstrap.sh && PYTHONPATH=plugins .venv/bin/python -m simulator $(SIM_ARGS)

check-first-start:  ## the README's first-start check: make airflow (replayed session) from a new state directory, its first minute run without a failure or an alert
	@scripts/test.sh tests/test_first_start.py
