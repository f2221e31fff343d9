-- Retention on plain PostgreSQL: dropping a whole day's partition is instant and leaves
-- no bloat, unlike DELETE. Partitions are named readings_YYYYMMDD (UTC day).
CREATE FUNCTION readings_drop_before(cutoff timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'readings'::regclass AND c.relname ~ '^readings_[0-9]{8}$'
    LOOP
        -- A day's partition may go once its whole day lies before the cutoff.
        IF to_date(substr(part.relname, 10), 'YYYYMMDD') + 1
           <= (cutoff AT TIME ZONE 'UTC')::date THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$;
