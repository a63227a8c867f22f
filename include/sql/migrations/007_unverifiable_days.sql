-- A day whose volumes cannot tell its missing minutes from lost ones is "unverifiable", not a gap.
-- KIS's day volume (acml_vol) also counts off-session trades (docs/krx-sessions.md), so it exceeds
-- the sum of the minute bars on most days; a mismatch alone proves nothing. volume_status now says
-- which way it differs: exceeds (expected with off-session trades) or below (the bars hold more
-- than the day: reported for the today endpoint's closing auction). 'mismatch' stays readable in
-- the rows written before.
DO $$
DECLARE
    t text;
    c record;
BEGIN
    FOREACH t IN ARRAY ARRAY['minute_verification', 'minute_verification_history'] LOOP
        FOR c IN
            SELECT conname FROM pg_constraint
            WHERE conrelid = t::regclass AND contype = 'c'
              AND (pg_get_constraintdef(oid) LIKE '%volume_status%' OR pg_get_constraintdef(oid) LIKE '%(status%')
        LOOP
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', t, c.conname);
        END LOOP;
        EXECUTE format(
            'ALTER TABLE %I ADD CONSTRAINT %I CHECK (volume_status IN (''match'', ''exceeds'', ''below'', ''mismatch'', ''unknown''))',
            t, t || '_volume_status_check');
        EXECUTE format(
            'ALTER TABLE %I ADD CONSTRAINT %I CHECK (status IN (''complete'', ''complete_with_explained_absences'', ''unverifiable'', ''gap'', ''no_data''))',
            t, t || '_status_check');
    END LOOP;
END
$$;
