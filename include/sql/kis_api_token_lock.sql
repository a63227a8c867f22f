-- Lock (and create when missing) the token row of one app key for this transaction, and read it.
-- The no-op update makes ON CONFLICT take the row lock: concurrent callers queue here, and each one
-- sees the row as the previous holder committed it.
INSERT INTO kis_api_token AS t (app_key_hash)
VALUES (%(app_key_hash)s)
ON CONFLICT (app_key_hash) DO UPDATE SET app_key_hash = t.app_key_hash
RETURNING
    t.token_ciphertext,
    EXTRACT(EPOCH FROM t.refresh_after - clock_timestamp())::float8 AS refresh_in,
    EXTRACT(EPOCH FROM t.expires_at - clock_timestamp())::float8 AS expires_in,
    EXTRACT(EPOCH FROM clock_timestamp() - t.last_issue_at)::float8 AS since_last_issue,
    t.refused_code,
    t.refused_message;
