-- Records the day's master files (kis.universe), replacing those of an earlier load of the day.
-- Parameters: day (date), run_id (text), loads (JSON array of {"market", "records", "file_written"
-- (ISO timestamp or null), "sha256"}).
INSERT INTO stock_universe_loads AS stored (trading_date, market, records, file_written, sha256, run_id)
SELECT %(day)s, market, records, file_written, sha256, %(run_id)s
FROM jsonb_to_recordset(%(loads)s::jsonb) AS loaded (market text, records integer, file_written timestamp, sha256 text)
ON CONFLICT (trading_date, market) DO UPDATE
SET records = EXCLUDED.records, file_written = EXCLUDED.file_written, sha256 = EXCLUDED.sha256,
    run_id = EXCLUDED.run_id, loaded_at = now();
