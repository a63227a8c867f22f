-- The stored token of one app key, without locking (the fast path of every worker).
SELECT
    token_ciphertext,
    EXTRACT(EPOCH FROM refresh_after - clock_timestamp())::float8 AS refresh_in,
    EXTRACT(EPOCH FROM expires_at - clock_timestamp())::float8 AS expires_in
FROM kis_api_token
WHERE app_key_hash = %(app_key_hash)s;
