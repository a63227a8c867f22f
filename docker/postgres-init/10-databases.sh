#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is new: the Airflow metadata database and the market
# database, each with its own owner, on the one server of the compose stack.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v airflow_password="$AIRFLOW_DB_PASSWORD" -v market_password="$MARKET_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE market LOGIN PASSWORD :'market_password';
CREATE DATABASE kis_market OWNER market;
-- As on the local cluster: psql sessions show bar times in KST (the code never relies on it).
ALTER DATABASE kis_market SET timezone TO 'Asia/Seoul';
SQL
