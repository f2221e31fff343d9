-- Two sessions creating the same day's partition at once: the loser may also fail on the
-- table's row type (duplicate_object, "type readings_YYYYMMDD already exists"), not only
-- on the table or the catalog's unique index. Seen in CI when a test seeded telemetry for
-- a new UTC day while the app's partition housekeeping created that day.
CREATE OR REPLACE FUNCTION readings_ensure_partitions(from_time timestamptz, to_time timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day date := (from_time AT TIME ZONE 'UTC')::date;
    last_day date := (to_time AT TIME ZONE 'UTC')::date;
    created integer := 0;
    parent text;
    part text;
BEGIN
    WHILE day <= last_day LOOP
        FOREACH parent IN ARRAY ARRAY['readings', 'readings_5m'] LOOP
            part := parent || '_' || to_char(day, 'YYYYMMDD');
            IF to_regclass(part) IS NULL THEN
                BEGIN
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
                EXCEPTION WHEN duplicate_table OR duplicate_object OR unique_violation THEN
                    -- Another session created it first; when both create it at once the
                    -- loser sees the catalog's unique index, or the table's row type
                    -- ("type ... already exists"). Its transaction attached it too.
                    NULL;
                END;
            END IF;
        END LOOP;
        day := day + 1;
    END LOOP;
    RETURN created;
END $$;
