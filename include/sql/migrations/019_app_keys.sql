-- Several app keys (issue 23): the work of a run is shared across the KIS connections of the
-- Variable kis_connections, and a key KIS refuses (EGW00103/EGW00105: bad, revoked or locked out)
-- is alerted once a day and left out by the later runs of that day (kis.app_keys).

-- The refusal of an app key at its last call to /oauth2/tokenP, kept beside the time of that call:
-- the key's other workers get the same answer from here instead of asking KIS again within the
-- minute (KIS issues one token a minute per key; asking a refusing key again and again is what a
-- lockout answers). Cleared at the next call to /oauth2/tokenP.
ALTER TABLE kis_api_token
    ADD COLUMN refused_code    text,
    ADD COLUMN refused_message text;

-- One key_refused alert per connection and trading date, however many fetch tasks of a run meet
-- the refusal at once: insert_collection_alert.sql does nothing when the open one exists. Resolving
-- it (after fixing the key) puts the key back into the day's runs, and a new refusal alerts again.
CREATE UNIQUE INDEX uk_collection_alerts_key_refused
    ON collection_alerts (trading_date, (details->>'conn_id'))
    WHERE kind = 'key_refused' AND resolved_at IS NULL;
