-- Remember that /oauth2/tokenP was called now (answered or throttled): the 1/min clock starts here,
-- and the refusal of the previous call, if any, no longer stands.
UPDATE kis_api_token
SET last_issue_at = clock_timestamp(), refused_code = NULL, refused_message = NULL
WHERE app_key_hash = %(app_key_hash)s;
