-- GCRA without burst: reserve the next send slot of one app key in one atomic statement.
-- The slot is max(tat, now); the new tat is slot + emission interval. The caller sleeps `wait`
-- seconds. clock_timestamp() (not now()) so the time is read when the row lock is held.
INSERT INTO kis_api_rate AS r (app_key_hash, tat)
VALUES (%(app_key_hash)s, clock_timestamp() + make_interval(secs => %(interval)s))
ON CONFLICT (app_key_hash) DO UPDATE
SET tat = GREATEST(r.tat, clock_timestamp()) + make_interval(secs => %(interval)s)
RETURNING GREATEST(EXTRACT(EPOCH FROM r.tat - clock_timestamp())::float8 - %(interval)s, 0) AS wait;
