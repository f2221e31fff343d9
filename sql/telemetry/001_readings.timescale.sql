-- Telemetry on TimescaleDB: a hypertable chunked by day (an IoT fleet of thousands of
-- devices at one reading a minute per metric fits a day's chunk comfortably in memory).
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE readings (
    tenant_id  uuid NOT NULL,
    device_id  uuid NOT NULL,
    metric     text NOT NULL,
    time       timestamptz NOT NULL,
    value      double precision NOT NULL,
    UNIQUE (device_id, metric, time)
);
SELECT create_hypertable('readings', by_range('time', INTERVAL '1 day'));

-- Chunks are created by TimescaleDB itself; the function exists so callers need not
-- know which mode the store runs in.
CREATE FUNCTION readings_ensure_partitions(from_time timestamptz, to_time timestamptz)
RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;
