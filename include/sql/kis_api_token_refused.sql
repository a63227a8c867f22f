-- KIS refused the app key at the call to /oauth2/tokenP just marked (EGW00103/EGW00105): its other
-- workers read the refusal instead of asking again within the issue interval.
UPDATE kis_api_token
SET refused_code = %(refused_code)s, refused_message = %(refused_message)s
WHERE app_key_hash = %(app_key_hash)s;
