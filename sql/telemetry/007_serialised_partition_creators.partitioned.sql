-- Partition creators take one transaction-level advisory lock before creating anything.
-- Without it, sessions with offset day ranges deadlock (5-6 of 12 rounds): A holds SHARE
-- UPDATE EXCLUSIVE on readings (from attaching day D-1) until commit, B has created day D
-- uncommitted and waits for that lock to attach it, and A's CREATE of day D waits on B's
-- catalog row. With the lock, one transaction at a time creates partitions: the lock is
-- always taken before ATTACH's SHARE UPDATE EXCLUSIVE, and both are held to the end of the
-- transaction, so no creator can hold the one while waiting for the other.
-- The common case (every day exists) takes no lock: a reader of the catalog sees committed
-- partitions without waiting. Retention's drops do not take it: a drop waits for
-- ACCESS EXCLUSIVE on readings behind open ingests, and an ingest that holds readings and
-- waits for this lock behind the drop would close a cycle.
-- The key is any constant shared by every replica (distinct from the migrations' lock).
CREATE OR REPLACE FUNCTION readings_ensure_partitions(from_time timestamptz, to_time timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    first_day date := (from_time AT TIME ZONE 'UTC')::date;
    last_day date := (to_time AT TIME ZONE 'UTC')::date;
    day date;
    created integer := 0;
    parent text;
    part text;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM generate_series(first_day, last_day, INTERVAL '1 day') AS d,
                      unnest(ARRAY['readings', 'readings_5m']) AS p
        WHERE to_regclass(p || '_' || to_char(d, 'YYYYMMDD')) IS NULL
    ) THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(1079245710);
    day := first_day;
    WHILE day <= last_day LOOP
        FOREACH parent IN ARRAY ARRAY['readings', 'readings_5m'] LOOP
            part := parent || '_' || to_char(day, 'YYYYMMDD');
            -- Checked again under the lock, in pg_class itself: the previous holder may
            -- have created it, and taking an advisory lock does not refresh the catalog
            -- cache to_regclass reads (a relation lock would), while a new statement's
            -- snapshot sees every committed row.
            IF NOT EXISTS (SELECT 1 FROM pg_class
                           WHERE relname = part
                             AND relnamespace = current_schema()::regnamespace) THEN
                EXECUTE format(
                    'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                    part, parent);
                EXECUTE format(
                    'ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                    parent, part, (day::timestamp AT TIME ZONE 'UTC'),
                    ((day + 1)::timestamp AT TIME ZONE 'UTC'));
                IF parent = 'readings' THEN
                    created := created + 1;
                END IF;
            END IF;
        END LOOP;
        day := day + 1;
    END LOOP;
    RETURN created;
END $$;
