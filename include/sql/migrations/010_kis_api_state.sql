-- State the KIS hook shares between every worker process and machine that uses one app key.
-- Rows are keyed by the SHA-256 of the app key: the key itself is never stored.

-- One access token per app key, encrypted with Airflow's Fernet key (never in plain text).
CREATE TABLE IF NOT EXISTS kis_api_token (
    app_key_hash      text PRIMARY KEY,
    token_ciphertext  text,         -- Fernet token of the access token; NULL when none or dropped
    expires_at        timestamptz,  -- when KIS stops accepting it
    refresh_after     timestamptz,  -- when workers start asking for a new one (ahead of expiry)
    last_issue_at     timestamptz   -- last call to /oauth2/tokenP (KIS allows one a minute)
);

-- GCRA state of the shared request-rate limiter: the theoretical arrival time of the next request.
CREATE TABLE IF NOT EXISTS kis_api_rate (
    app_key_hash  text PRIMARY KEY,
    tat           timestamptz NOT NULL
);
