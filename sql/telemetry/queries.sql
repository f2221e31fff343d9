-- Named queries of the Telemetry store. Every query is scoped by tenant_id ($1).
-- first/last use min/max over [epoch, value] pairs: one pass, no sort, no second scan.

-- name: latest
-- The newest reading of each metric of $3 (every metric when null) of the devices of $2,
-- as one row of arrays in device order (n: the device's place in $2), then metric order:
-- a few arrays to decode instead of a row, and a UUID, per reading. Times are float8
-- epochs (exact to the microsecond until 2255): asyncpg's timestamptz decoding costs
-- ~5,800 instructions a value (callgrind, 125 readings).
SELECT array_agg(d.n ORDER BY d.n, l.metric) AS ns,
       array_agg(l.metric ORDER BY d.n, l.metric) AS metrics,
       array_agg(date_part('epoch', l.time) ORDER BY d.n, l.metric) AS epochs,
       array_agg(l.value ORDER BY d.n, l.metric) AS vals
FROM unnest($2::uuid[]) WITH ORDINALITY AS d(id, n)
JOIN latest_readings l ON l.device_id = d.id
WHERE l.tenant_id = $1 AND ($3::text[] IS NULL OR l.metric = ANY($3));

-- name: series_raw
-- Per device: stats over the whole range and the first $6 raw points in time order
-- ($7 = true for newest first).
SELECT d.id AS device_id, s.*, p.times, p.vals
FROM unnest($2::uuid[]) AS d(id)
CROSS JOIN LATERAL (
    SELECT count(*) AS n, min(value) AS min, max(value) AS max, avg(value) AS avg,
           stddev_samp(value) AS stddev,
           (min(ARRAY[date_part('epoch', time), value]))[2] AS first,
           (max(ARRAY[date_part('epoch', time), value]))[2] AS last
    FROM readings
    WHERE tenant_id = $1 AND device_id = d.id AND metric = $3 AND time >= $4 AND time < $5
) s
CROSS JOIN LATERAL (
    SELECT array_agg(x.time ORDER BY CASE WHEN $7 THEN x.time END DESC, x.time) AS times,
           array_agg(x.value ORDER BY CASE WHEN $7 THEN x.time END DESC, x.time) AS vals
    FROM (
        SELECT time, value FROM readings
        WHERE tenant_id = $1 AND device_id = d.id AND metric = $3 AND time >= $4 AND time < $5
        ORDER BY CASE WHEN $7 THEN time END DESC, time ASC
        LIMIT $6
    ) x
) p;

-- name: series_bucketed
-- Per device, one scan of the range: one row per non-empty bucket of width $6 (aligned to
-- $7, the gateway's fixed origin, so equal ranges always bucket alike) with partial
-- aggregates, from which the range's stats are summed; first and last are index probes.
-- {agg} is filled from a fixed table of aggregate expressions, never from input.
-- Bucket starts come back as epoch seconds (float8, date_part), as in every bucketed
-- query here: the gateway maps them to datetimes shared by every device
-- (gateway/stores/telemetry.py, bucket_time), where timestamptz[] made one per element.
SELECT d.id AS device_id, s.n, s.min, s.max, s.avg, s.stddev, f.first, l.last,
       s.epochs, s.vals
FROM unnest($2::uuid[]) AS d(id)
CROSS JOIN LATERAL (
    SELECT sum(x.n)::bigint AS n, min(x.lo) AS min, max(x.hi) AS max,
           sum(x.total) / sum(x.n) AS avg,
           CASE WHEN sum(x.n) > 1 THEN sqrt(greatest(
               (sum(x.squares) - sum(x.total) ^ 2 / sum(x.n)) / (sum(x.n) - 1), 0)) END
               AS stddev,
           array_agg(date_part('epoch', x.bucket) ORDER BY x.bucket) AS epochs,
           array_agg(x.v ORDER BY x.bucket) AS vals
    FROM (
        SELECT date_bin($6::interval, time, $7::timestamptz) AS bucket, count(*) AS n,
               min(value) AS lo, max(value) AS hi, sum(value) AS total,
               sum(value * value) AS squares, {agg} AS v
        FROM readings
        WHERE tenant_id = $1 AND device_id = d.id AND metric = $3 AND time >= $4 AND time < $5
        GROUP BY 1
    ) x
) s
LEFT JOIN LATERAL (
    SELECT value AS first FROM readings
    WHERE tenant_id = $1 AND device_id = d.id AND metric = $3 AND time >= $4 AND time < $5
    ORDER BY time LIMIT 1
) f ON true
LEFT JOIN LATERAL (
    SELECT value AS last FROM readings
    WHERE tenant_id = $1 AND device_id = d.id AND metric = $3 AND time >= $4 AND time < $5
    ORDER BY time DESC LIMIT 1
) l ON true;

-- name: series_rolled
-- The bucketed series for buckets that are multiples of 5 minutes, from the 5-minute
-- rollup (readings_5m: a table maintained on ingest, or TimescaleDB's continuous
-- aggregate). Rollup rows cover [$8, $9), the whole 5-minute buckets inside the range;
-- the partial buckets at its edges, [$4, $8) and [$9, $5), are aggregated from readings
-- into the same partial form, so the answer equals series_bucketed's over readings.
-- The range's first and last values are those of its earliest and latest part (parts
-- of one device never overlap in time), found by joining back rather than by comparing
-- (time, value) arrays over every part, which took most of the time (EXPLAIN ANALYZE).
-- {agg} is filled from a fixed table of aggregate expressions over parts.
WITH parts AS MATERIALIZED (
    SELECT device_id, bucket, n, total, squares, lo, hi, first_time, first_value,
           last_time, last_value
    FROM readings_5m
    WHERE tenant_id = $1 AND device_id = ANY($2::uuid[]) AND metric = $3
      AND bucket >= $8 AND bucket < $9
    UNION ALL
    SELECT device_id, date_bin(INTERVAL '5 minutes', time, $7::timestamptz), count(*),
           sum(value), sum(value * value), min(value), max(value),
           min(time), (min(ARRAY[date_part('epoch', time), value]))[2],
           max(time), (max(ARRAY[date_part('epoch', time), value]))[2]
    FROM readings
    WHERE tenant_id = $1 AND device_id = ANY($2::uuid[]) AND metric = $3
      AND ((time >= $4 AND time < $8) OR (time >= $9 AND time < $5))
    GROUP BY 1, 2
), buckets AS (
    SELECT device_id, date_bin($6::interval, bucket, $7::timestamptz) AS bucket,
           sum(n) AS n, sum(total) AS total, sum(squares) AS squares,
           min(lo) AS lo, max(hi) AS hi, min(bucket) AS first_part, max(bucket) AS last_part,
           {agg} AS v
    FROM parts
    GROUP BY 1, 2
), series AS (
    SELECT device_id, sum(n)::bigint AS n, min(lo) AS min, max(hi) AS max,
           sum(total) / sum(n)::float8 AS avg,
           CASE WHEN sum(n) > 1 THEN sqrt(greatest(
               (sum(squares) - sum(total) ^ 2 / sum(n)::float8) / (sum(n)::float8 - 1), 0))
               END AS stddev,
           min(first_part) AS first_part, max(last_part) AS last_part,
           array_agg(date_part('epoch', bucket) ORDER BY bucket) AS epochs,
           array_agg(v ORDER BY bucket) AS vals
    FROM buckets
    GROUP BY device_id
)
SELECT s.device_id, s.n, s.min, s.max, s.avg, s.stddev, f.first_value AS first,
       l.last_value AS last, s.epochs, s.vals
FROM series s
JOIN parts f ON f.device_id = s.device_id AND f.bucket = s.first_part
JOIN parts l ON l.device_id = s.device_id AND l.bucket = s.last_part;

-- name: series_rolled_5m
-- series_rolled for buckets of exactly 5 minutes: each part is a bucket, so there is no
-- second grouping (3-4 times faster on 100 devices x 24 h). Parameters as series_rolled
-- without the bucket width: $6 origin, [$7, $8) the rollup's span; $9 is the gateway's
-- first bucket start (the one holding $4). Each value comes with its bucket's place on
-- the range's grid (0 for $9), which the gateway fills its points from: no bucket times
-- to decode, and no places to read when every bucket holds readings. The range's first
-- and last values are the ends of the parts in order, where two joins back to the parts
-- took longer (PostgreSQL execution 5.35 -> 5.22 ms, median of 25, 100 devices x 1 h).
-- The grid itself is not joined in here: generate_series over parameters made every
-- plan custom (pg_prepared_statements), 1.3 ms of planning per execution. parts stays
-- MATERIALIZED: inlined, the sums came in another order and differed in the last bit.
-- {agg} is a fixed expression over one part's columns.
WITH parts AS MATERIALIZED (
    SELECT device_id, bucket, n, total, squares, lo, hi, first_value, last_value
    FROM readings_5m
    WHERE tenant_id = $1 AND device_id = ANY($2::uuid[]) AND metric = $3
      AND bucket >= $7 AND bucket < $8
    UNION ALL
    SELECT device_id, date_bin(INTERVAL '5 minutes', time, $6::timestamptz), count(*),
           sum(value), sum(value * value), min(value), max(value),
           (min(ARRAY[date_part('epoch', time), value]))[2],
           (max(ARRAY[date_part('epoch', time), value]))[2]
    FROM readings
    WHERE tenant_id = $1 AND device_id = ANY($2::uuid[]) AND metric = $3
      AND ((time >= $4 AND time < $7) OR (time >= $8 AND time < $5))
    GROUP BY 1, 2
), series AS (
    SELECT device_id, sum(n)::bigint AS n, min(lo) AS min, max(hi) AS max,
           sum(total) / sum(n)::float8 AS avg,
           CASE WHEN sum(n) > 1 THEN sqrt(greatest(
               (sum(squares) - sum(total) ^ 2 / sum(n)::float8) / (sum(n)::float8 - 1), 0))
               END AS stddev,
           array_agg(first_value ORDER BY bucket) AS firsts,
           array_agg(last_value ORDER BY bucket) AS lasts,
           array_agg(((date_part('epoch', bucket) - date_part('epoch', $9::timestamptz))
                      / 300)::int ORDER BY bucket) AS places,
           array_agg({agg} ORDER BY bucket) AS vals
    FROM parts
    GROUP BY device_id
)
SELECT device_id, n, min, max, avg, stddev, firsts[1] AS first,
       lasts[cardinality(lasts)] AS last, places, vals
FROM series;

-- name: rollup_rolled
-- The asset-tree rollup (see rollup) from the 5-minute rollup plus raw edges, as in
-- series_rolled: $9/$10 bound the whole 5-minute buckets inside [$5, $6).
WITH parts AS (
    SELECT device_id, bucket, n, total, squares, lo, hi, first_time, first_value,
           last_time, last_value
    FROM readings_5m
    WHERE tenant_id = $1 AND device_id = ANY($3::uuid[]) AND metric = $4
      AND bucket >= $9 AND bucket < $10
    UNION ALL
    SELECT device_id, date_bin(INTERVAL '5 minutes', time, $8::timestamptz), count(*),
           sum(value), sum(value * value), min(value), max(value),
           min(time), (min(ARRAY[date_part('epoch', time), value]))[2],
           max(time), (max(ARRAY[date_part('epoch', time), value]))[2]
    FROM readings
    WHERE tenant_id = $1 AND device_id = ANY($3::uuid[]) AND metric = $4
      AND ((time >= $5 AND time < $9) OR (time >= $10 AND time < $6))
    GROUP BY 1, 2
), r AS MATERIALIZED (
    SELECT p.root, x.*
    FROM (SELECT DISTINCT * FROM unnest($2::uuid[], $3::uuid[]) AS p(root, device_id)) p
    JOIN parts x USING (device_id)
), stats AS (
    SELECT root, sum(n)::bigint AS n, count(DISTINCT device_id) AS devices,
           min(lo) AS min, max(hi) AS max, sum(total) / sum(n)::float8 AS avg,
           CASE WHEN sum(n) > 1 THEN sqrt(greatest(
               (sum(squares) - sum(total) ^ 2 / sum(n)::float8) / (sum(n)::float8 - 1), 0))
               END AS stddev,
           (min(ARRAY[date_part('epoch', first_time), first_value]))[2] AS first,
           (max(ARRAY[date_part('epoch', last_time), last_value]))[2] AS last
    FROM r GROUP BY root
), buckets AS (
    SELECT root, date_bin($7::interval, bucket, $8::timestamptz) AS bucket, {agg} AS v
    FROM r GROUP BY 1, 2
)
SELECT s.*, b.epochs, b.vals
FROM stats s
LEFT JOIN (
    SELECT root, array_agg(date_part('epoch', bucket) ORDER BY bucket) AS epochs,
           array_agg(v ORDER BY bucket) AS vals
    FROM buckets GROUP BY root
) b USING (root);

-- name: ensure_partitions
SELECT readings_ensure_partitions($1, $2);

-- name: upsert_latest
-- Keeps the newest reading per (device, metric) from a batch staged in tmp_readings.
INSERT INTO latest_readings (tenant_id, device_id, metric, time, value)
SELECT DISTINCT ON (device_id, metric) tenant_id, device_id, metric, time, value
FROM tmp_readings
ORDER BY device_id, metric, time DESC
ON CONFLICT (device_id, metric) DO UPDATE
SET time = EXCLUDED.time, value = EXCLUDED.value
WHERE latest_readings.time < EXCLUDED.time AND latest_readings.tenant_id = EXCLUDED.tenant_id;

-- name: insert_staged
INSERT INTO readings (tenant_id, device_id, metric, time, value)
SELECT tenant_id, device_id, metric, time, value FROM tmp_readings
ON CONFLICT (device_id, metric, time) DO NOTHING;

-- name: ingest_skipping_duplicates
-- ingestTelemetry's batch when its binary COPY met a duplicate (a retry, or a reading given
-- twice): new readings are stored in the canonical lock order (device, metric in byte
-- order, time; gateway/writes/bulk_ingest.py), duplicates skipped; back come the newest
-- inserted reading of each series and how many were inserted (no row: none), for the
-- last values, upserted next (upsert_latest_many) after the rollup trigger has run.
WITH inserted AS (
    INSERT INTO readings (tenant_id, device_id, metric, time, value)
    SELECT $1::uuid, x.device_id, x.metric, x.time, x.value
    FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::float8[])
         AS x(device_id, metric, time, value)
    ORDER BY x.device_id, x.metric COLLATE "C", x.time
    ON CONFLICT (device_id, metric, time) DO NOTHING
    RETURNING device_id, metric, time, value
)
SELECT DISTINCT ON (device_id, metric) device_id, metric, time, value,
       count(*) OVER () AS inserted
FROM inserted
ORDER BY device_id, metric, time DESC;

-- name: last_seen_after
-- The reconciler's scan: newest reading time per device, in device-id order after $1.
SELECT tenant_id, device_id, max(time) AS seen
FROM latest_readings
WHERE device_id > $1
GROUP BY tenant_id, device_id
ORDER BY device_id
LIMIT $2;

-- name: forecast
-- Per device: a least-squares line of value over seconds since the window start ($4)
-- (centred x keeps float8 precise), over readings in [$4, $5).
SELECT d.id AS device_id, f.n, f.slope, f.intercept, f.r2
FROM unnest($2::uuid[]) AS d(id)
CROSS JOIN LATERAL (
    SELECT count(*) AS n,
           regr_slope(value, extract(epoch FROM time - $4)) AS slope,
           regr_intercept(value, extract(epoch FROM time - $4)) AS intercept,
           regr_r2(value, extract(epoch FROM time - $4)) AS r2
    FROM readings
    WHERE tenant_id = $1 AND device_id = d.id AND metric = $3 AND time >= $4 AND time < $5
) f;

-- name: rollup
-- One metric aggregated across groups of devices: $2/$3 pair each group (an asset) with
-- a device below it. Per group: stats, contributing devices, and one value per non-empty
-- bucket. {agg} is filled from a fixed table of aggregate expressions, never from input.
WITH r AS MATERIALIZED (
    SELECT p.root, x.device_id, x.time, x.value
    FROM unnest($2::uuid[], $3::uuid[]) AS p(root, device_id)
    JOIN readings x ON x.device_id = p.device_id
    WHERE x.tenant_id = $1 AND x.metric = $4 AND x.time >= $5 AND x.time < $6
), stats AS (
    SELECT root, count(*) AS n, count(DISTINCT device_id) AS devices,
           min(value) AS min, max(value) AS max, avg(value) AS avg,
           stddev_samp(value) AS stddev,
           (min(ARRAY[date_part('epoch', time), value]))[2] AS first,
           (max(ARRAY[date_part('epoch', time), value]))[2] AS last
    FROM r GROUP BY root
), buckets AS (
    SELECT root, date_bin($7::interval, time, $8::timestamptz) AS bucket, {agg} AS v
    FROM r GROUP BY 1, 2
)
SELECT s.*, b.epochs, b.vals
FROM stats s
LEFT JOIN (
    SELECT root, array_agg(date_part('epoch', bucket) ORDER BY bucket) AS epochs,
           array_agg(v ORDER BY bucket) AS vals
    FROM buckets GROUP BY root
) b USING (root);

-- name: insert_staged_in_order
-- POST /ingest (gateway/writes/bulk_ingest.py): every staged reading into readings in one
-- statement, in the canonical lock order (device, metric in byte order, time; as the
-- ingest statement), duplicates skipped; back come the newest inserted reading of each
-- series and how many were inserted (no row: none).
WITH inserted AS (
    INSERT INTO readings (tenant_id, device_id, metric, time, value)
    SELECT tenant_id, device_id, metric, time, value FROM ingest_staging
    ORDER BY device_id, metric COLLATE "C", time
    ON CONFLICT (device_id, metric, time) DO NOTHING
    RETURNING device_id, metric, time, value
)
SELECT DISTINCT ON (device_id, metric) device_id, metric, time, value,
       count(*) OVER () AS inserted
FROM inserted
ORDER BY device_id, metric, time DESC;

-- name: upsert_latest_many
-- The last values of both ingest routes, one row per (device, metric) written by the
-- request or batch; the last-value table moves forward only. Rows are locked in key order, as every other
-- writer of latest_readings does, so concurrent ingests cannot deadlock on them.
INSERT INTO latest_readings (tenant_id, device_id, metric, time, value)
SELECT $1, x.device_id, x.metric, x.time, x.value
FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::float8[])
     AS x(device_id, metric, time, value)
ORDER BY x.device_id, x.metric
ON CONFLICT (device_id, metric) DO UPDATE
SET time = EXCLUDED.time, value = EXCLUDED.value
WHERE latest_readings.time < EXCLUDED.time AND latest_readings.tenant_id = EXCLUDED.tenant_id;

-- name: rollup_defer
-- POST /ingest: the rollup trigger collects until rollup_merge (migration 008).
SELECT readings_rollup_defer();

-- name: rollup_merge
SELECT readings_rollup_merge();

-- name: drop_before
SELECT readings_drop_before($1);
