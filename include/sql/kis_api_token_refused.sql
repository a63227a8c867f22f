-- KIS refused the app key (EGW00103/EGW00105), at /oauth2/tokenP or at a data call: its other workers
-- read the refusal here instead of asking KIS again within the issue interval. The time of the
-- refusal counts as an issue request (a data call refused with a valid token also starts the
-- interval), and a token of the refused key serves nothing any more.
UPDATE kis_api_token
SET refused_code = %(refused_code)s, refused_message = %(refused_message)s, last_issue_at = clock_timestamp(),
    token_ciphertext = NULL, expires_at = NULL, refresh_after = NULL
WHERE app_key_hash = %(app_key_hash)s;
