-- Telemetry on plain PostgreSQL: native range partitioning by day.
-- One day per partition keeps a 24 h dashboard range within one or two partitions and
-- makes retention a DROP of whole partitions.
CREATE TABLE readings (
    tenant_id  uuid NOT NULL,
    device_id  uuid NOT NULL,
    metric     text NOT NULL,
    time       timestamptz NOT NULL,
    value      double precision NOT NULL,
    UNIQUE (device_id, metric, time)
) PARTITION BY RANGE (time);

-- Creates the daily partitions covering [from_time, to_time]; safe to call concurrently.
CREATE FUNCTION readings_ensure_partitions(from_time timestamptz, to_time timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day date := (from_time AT TIME ZONE 'UTC')::date;
    last_day date := (to_time AT TIME ZONE 'UTC')::date;
    created integer := 0;
    part text;
BEGIN
    WHILE day <= last_day LOOP
        part := 'readings_' || to_char(day, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
                    part, (day::timestamp AT TIME ZONE 'UTC'),
                    ((day + 1)::timestamp AT TIME ZONE 'UTC'));
                created := created + 1;
            EXCEPTION WHEN duplicate_table THEN
                NULL;  -- another session created it first
            END;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END $$;
