-- Partitions are created as plain tables and then attached. CREATE TABLE .. PARTITION OF
-- takes an ACCESS EXCLUSIVE lock on the parent, which waits for every open transaction
-- that reads or writes readings and blocks every later one meanwhile; ATTACH PARTITION
-- takes only SHARE UPDATE EXCLUSIVE, which inserts and reads do not conflict with. This
-- is what lets POST /ingest create the partition of a day it reaches in the middle of a
-- request that has already written readings (see gateway/ingest.py).
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
                    -- ("type ... already exists", seen in CI at a UTC day change). Its
                    -- transaction attached it too.
                    NULL;
                END;
            END IF;
        END LOOP;
        day := day + 1;
    END LOOP;
    RETURN created;
END $$;
