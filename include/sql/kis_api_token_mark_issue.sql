-- Remember that /oauth2/tokenP was called now (answered or throttled): the 1/min clock starts here.
UPDATE kis_api_token
SET last_issue_at = clock_timestamp()
WHERE app_key_hash = %(app_key_hash)s;
