-- One alert of the collection (kis.alerts.send_alert); the dashboard and the status API read them.
-- venue is NULL for an alert about no venue in particular (a missed deadline).
INSERT INTO collection_alerts
    (kind, dag_id, run_id, stock_code, venue, trading_date, minutes, message, details)
VALUES (%(kind)s, %(dag_id)s, %(run_id)s, %(stock_code)s, %(venue)s, %(trading_date)s,
        %(minutes)s::timestamp[], %(message)s, %(details)s::jsonb);
