-- Drop the token KIS refused, but only when it is still the stored one: another worker may have
-- replaced it already, and its fresh token must not be thrown away.
UPDATE kis_api_token
SET token_ciphertext = NULL, expires_at = NULL, refresh_after = NULL
WHERE app_key_hash = %(app_key_hash)s AND token_ciphertext = %(token_ciphertext)s;
