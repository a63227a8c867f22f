-- Store a newly issued token (encrypted) with its expiry and the time to start refreshing it.
UPDATE kis_api_token
SET token_ciphertext = %(token_ciphertext)s,
    expires_at = clock_timestamp() + make_interval(secs => %(expires_in)s),
    refresh_after = clock_timestamp() + make_interval(secs => %(refresh_in)s)
WHERE app_key_hash = %(app_key_hash)s;
