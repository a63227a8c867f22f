-- One alert of the collection (kis.alerts.send_alert); the dashboard and the status API read them.
-- venue is NULL for an alert about no venue in particular (a missed deadline). An alert that a
-- unique index makes once-only (key_refused: migration 019) and that exists already is not stored
-- again: no row comes back, and the alert is not forwarded.
INSERT INTO collection_alerts
    (kind, dag_id, run_id, stock_code, venue, trading_date, minutes, message, details)
VALUES (%(kind)s, %(dag_id)s, %(run_id)s, %(stock_code)s, %(venue)s, %(trading_date)s,
        %(minutes)s::timestamp[], %(message)s, %(details)s::jsonb)
ON CONFLICT DO NOTHING
RETURNING id;
