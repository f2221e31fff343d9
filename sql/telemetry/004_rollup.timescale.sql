-- The 5-minute rollup on TimescaleDB: a continuous aggregate with the same name and columns
-- as the plain-PostgreSQL rollup table, so one set of queries reads either (see
-- queries.sql, series_rolled and rollup_rolled). It replaces the hourly aggregate of
-- 003, which nothing read: a 5-minute aggregate serves every bucket that is a multiple of
-- 5 minutes, 1 hour included, and one aggregate is refreshed instead of two.
-- time_bucket's default origin (2000-01-03) and the gateway's (2000-01-01) are two days
-- apart, a whole number of 5-minute buckets, so both bucket alike.
-- Real-time aggregation (materialized_only = false; off by default since 2.13) adds the
-- not yet materialized readings at query time. The policy refreshes every 5 minutes what
-- changed within the last 7 days (late data included: TimescaleDB tracks invalidated
-- ranges); readings arriving more than 7 days late reach the rollup only through an
-- explicit CALL refresh_continuous_aggregate('readings_5m', from, to).
-- Written against TimescaleDB 2.x's documented API; exercised only where a TimescaleDB
-- server is reachable (see tests/test_timescale.py).
DROP MATERIALIZED VIEW readings_1h;

CREATE MATERIALIZED VIEW readings_5m WITH (timescaledb.continuous) AS
SELECT tenant_id, device_id, metric, time_bucket(INTERVAL '5 minutes', time) AS bucket,
       count(*) AS n, sum(value) AS total, sum(value * value) AS squares,
       min(value) AS lo, max(value) AS hi,
       min(time) AS first_time, first(value, time) AS first_value,
       max(time) AS last_time, last(value, time) AS last_value
FROM readings
GROUP BY tenant_id, device_id, metric, bucket
WITH NO DATA;
ALTER MATERIALIZED VIEW readings_5m SET (timescaledb.materialized_only = false);
-- Daily chunks like the readings' (the default would be 10 days), so retention drops the
-- rollup of exactly the days it drops readings of.
SELECT set_chunk_time_interval('readings_5m', INTERVAL '1 day');
SELECT add_continuous_aggregate_policy('readings_5m',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '5 minutes',
    schedule_interval => INTERVAL '5 minutes');

-- Retention drops the rollup's chunks with the readings' (drop_chunks accepts a
-- continuous aggregate), so a dropped day leaves nothing behind in wide ranges.
CREATE OR REPLACE FUNCTION readings_drop_before(cutoff timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    dropped integer;
BEGIN
    PERFORM drop_chunks('readings_5m', older_than => cutoff);
    SELECT count(*) INTO dropped FROM drop_chunks('readings', older_than => cutoff);
    RETURN dropped;
END $$;
