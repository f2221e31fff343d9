-- TimescaleDB policies. Chunks older than 7 days are compressed into columnar form,
-- segmented by device (queries ask for a few devices) and ordered by metric, time DESC
-- (the unique key's order, newest first as dashboards read). The hourly continuous
-- aggregate keeps every aggregate the API offers, refreshed every 30 minutes and read in
-- real time (materialized_only = false) for the part not yet materialized.
-- Written against TimescaleDB 2.x's documented API; exercised only where a TimescaleDB
-- server is reachable (see tests/test_timescale.py).
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'metric, time DESC'
);
SELECT add_compression_policy('readings', INTERVAL '7 days');

CREATE MATERIALIZED VIEW readings_1h WITH (timescaledb.continuous) AS
SELECT tenant_id, device_id, metric, time_bucket(INTERVAL '1 hour', time) AS bucket,
       avg(value) AS avg, min(value) AS min, max(value) AS max, sum(value) AS sum,
       count(*) AS count, first(value, time) AS first, last(value, time) AS last
FROM readings
GROUP BY tenant_id, device_id, metric, bucket
WITH NO DATA;
ALTER MATERIALIZED VIEW readings_1h SET (timescaledb.materialized_only = false);
SELECT add_continuous_aggregate_policy('readings_1h',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');

CREATE FUNCTION readings_drop_before(cutoff timestamptz)
RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::integer FROM drop_chunks('readings', older_than => cutoff)
$$;
