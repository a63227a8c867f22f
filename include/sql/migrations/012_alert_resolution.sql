-- Resolved alerts (issue 14): an alert whose cause a later run settled stays in the table, as the
-- history of the day, but says so: when, and by which run. A fetch_failed alert is resolved by a
-- later successful fetch of its code, day and venue (resolve_fetched_alerts.sql); a gap or an
-- incomplete_day alert by a later verification of its day and venue that finds the code, or the
-- whole day, complete (resolve_verified_alerts.sql). NULL: still open.

ALTER TABLE collection_alerts
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN resolved_by text;
COMMENT ON COLUMN collection_alerts.resolved_at IS 'When a later run settled the alert; NULL while open';
COMMENT ON COLUMN collection_alerts.resolved_by IS 'The run id of the fetch or verification that settled it';

-- Both resolving statements look up the open alerts of one date and kind.
CREATE INDEX idx_collection_alerts_open ON collection_alerts (trading_date, kind) WHERE resolved_at IS NULL;
