-- One alert of the collection (kis.alerts.send_alert); the dashboard and the status API read them.
INSERT INTO collection_alerts (kind, dag_id, run_id, stock_code, trading_date, minutes, message, details)
VALUES (%(kind)s, %(dag_id)s, %(run_id)s, %(stock_code)s, %(trading_date)s, %(minutes)s::timestamp[],
        %(message)s, %(details)s::jsonb);
