-- A 5-minute rollup of readings on plain PostgreSQL, so wide ranges read one row per
-- device and 5 minutes instead of every reading (a 24 h dashboard of 100 devices at one
-- reading per 10 s: 28,800 rows instead of 864,000).
-- Each row holds the partial aggregates every Aggregate value and SeriesStats can be
-- combined from: count, sum, sum of squares (stddev), min, max, and the first and last
-- (time, value). Buckets are aligned to the gateway's origin 2000-01-01T00:00Z, so a
-- bucket of any multiple of 5 minutes is a whole number of rollup rows.
CREATE TABLE readings_5m (
    tenant_id    uuid NOT NULL,
    device_id    uuid NOT NULL,
    metric       text NOT NULL,
    bucket       timestamptz NOT NULL,
    n            bigint NOT NULL,
    total        double precision NOT NULL,
    squares      double precision NOT NULL,
    lo           double precision NOT NULL,
    hi           double precision NOT NULL,
    first_time   timestamptz NOT NULL,
    first_value  double precision NOT NULL,
    last_time    timestamptz NOT NULL,
    last_value   double precision NOT NULL,
    PRIMARY KEY (device_id, metric, bucket)
) PARTITION BY RANGE (bucket);

-- Daily partitions of readings and of the rollup come and go together: a 5-minute bucket
-- never straddles a UTC day, so retention drops a day of both at once.
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
                        'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                        part, parent, (day::timestamp AT TIME ZONE 'UTC'),
                        ((day + 1)::timestamp AT TIME ZONE 'UTC'));
                    IF parent = 'readings' THEN
                        created := created + 1;
                    END IF;
                EXCEPTION WHEN duplicate_table THEN
                    NULL;  -- another session created it first
                END;
            END IF;
        END LOOP;
        day := day + 1;
    END LOOP;
    RETURN created;
END $$;

CREATE OR REPLACE FUNCTION readings_drop_before(cutoff timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname, i.inhparent = 'readings'::regclass AS is_readings
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE (i.inhparent = 'readings'::regclass AND c.relname ~ '^readings_[0-9]{8}$')
           OR (i.inhparent = 'readings_5m'::regclass AND c.relname ~ '^readings_5m_[0-9]{8}$')
    LOOP
        -- A day's partition may go once its whole day lies before the cutoff.
        IF to_date(right(part.relname, 8), 'YYYYMMDD') + 1
           <= (cutoff AT TIME ZONE 'UTC')::date THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            IF part.is_readings THEN
                dropped := dropped + 1;
            END IF;
        END IF;
    END LOOP;
    RETURN dropped;
END $$;

-- Maintained by a statement-level trigger, in the inserting statement's transaction, from
-- its transition table: that holds only the rows actually inserted, so readings skipped by
-- ON CONFLICT DO NOTHING (duplicates) are never counted, and every write path (POST
-- /ingest, ingestTelemetry, COPY by tools) keeps the rollup exact. Late data merges into
-- its bucket: counts and sums add up, first/last move only to an earlier/later time.
-- Rows are upserted in key order so concurrent ingests lock them in the same order.
CREATE FUNCTION readings_5m_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO readings_5m AS r
    SELECT tenant_id, device_id, metric,
           date_bin(INTERVAL '5 minutes', time, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
           count(*), sum(value), sum(value * value), min(value), max(value),
           min(time), (min(ARRAY[extract(epoch FROM time)::float8, value]))[2],
           max(time), (max(ARRAY[extract(epoch FROM time)::float8, value]))[2]
    FROM new_rows
    GROUP BY tenant_id, device_id, metric, 4
    ORDER BY device_id, metric, 4
    ON CONFLICT (device_id, metric, bucket) DO UPDATE SET
        n = r.n + EXCLUDED.n,
        total = r.total + EXCLUDED.total,
        squares = r.squares + EXCLUDED.squares,
        lo = least(r.lo, EXCLUDED.lo),
        hi = greatest(r.hi, EXCLUDED.hi),
        first_time = least(r.first_time, EXCLUDED.first_time),
        first_value = CASE WHEN EXCLUDED.first_time < r.first_time
                           THEN EXCLUDED.first_value ELSE r.first_value END,
        last_time = greatest(r.last_time, EXCLUDED.last_time),
        last_value = CASE WHEN EXCLUDED.last_time > r.last_time
                          THEN EXCLUDED.last_value ELSE r.last_value END;
    RETURN NULL;
END $$;

CREATE TRIGGER readings_5m_maintain AFTER INSERT ON readings
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION readings_5m_add();

-- Rollup partitions for the days already stored, then the rollup of what is stored.
SELECT readings_ensure_partitions(
    to_date(right(min(c.relname), 8), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC',
    to_date(right(max(c.relname), 8), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC')
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'readings'::regclass AND c.relname ~ '^readings_[0-9]{8}$'
HAVING count(*) > 0;

INSERT INTO readings_5m
SELECT tenant_id, device_id, metric,
       date_bin(INTERVAL '5 minutes', time, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       count(*), sum(value), sum(value * value), min(value), max(value),
       min(time), (min(ARRAY[extract(epoch FROM time)::float8, value]))[2],
       max(time), (max(ARRAY[extract(epoch FROM time)::float8, value]))[2]
FROM readings
GROUP BY tenant_id, device_id, metric, 4;
