-- POST /ingest writes a request in many statements (a COPY per batch). With the rollup
-- trigger upserting readings_5m rows at every batch, two bulk ingests over the same
-- devices and minutes locked their first batches' rollup rows and then waited for each
-- other's (a deadlock: one request rolled back, its client told to retry a whole body).
-- A transaction that calls readings_rollup_defer() first collects the trigger's partial
-- aggregates in a temporary table instead, and readings_rollup_merge() folds them into
-- readings_5m in one statement, in key order, just before commit: every writer then locks
-- rollup rows in the same order (single-statement writers already do), and holds them
-- only from the merge to the commit. The rollup stays exact and in the same transaction.
CREATE FUNCTION readings_rollup_defer() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS readings_5m_pending (
        tenant_id uuid NOT NULL, device_id uuid NOT NULL, metric text NOT NULL,
        bucket timestamptz NOT NULL, n bigint NOT NULL, total double precision NOT NULL,
        squares double precision NOT NULL, lo double precision NOT NULL,
        hi double precision NOT NULL, first_time timestamptz NOT NULL,
        first_value double precision NOT NULL, last_time timestamptz NOT NULL,
        last_value double precision NOT NULL
    ) ON COMMIT DROP;
    PERFORM set_config('iotsphere.rollup_deferred', 'on', true);  -- to the transaction's end
END $$;

CREATE FUNCTION readings_rollup_merge() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('iotsphere.rollup_deferred', true), '') <> 'on' THEN
        RETURN;
    END IF;
    INSERT INTO readings_5m AS r
    SELECT tenant_id, device_id, metric, bucket, sum(n), sum(total), sum(squares), min(lo),
           max(hi), min(first_time),
           (min(ARRAY[date_part('epoch', first_time), first_value]))[2],
           max(last_time), (max(ARRAY[date_part('epoch', last_time), last_value]))[2]
    FROM pg_temp.readings_5m_pending
    GROUP BY tenant_id, device_id, metric, bucket
    ORDER BY device_id, metric, bucket
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
    TRUNCATE pg_temp.readings_5m_pending;
END $$;

-- The trigger of 006, collecting instead of upserting when the transaction deferred.
CREATE OR REPLACE FUNCTION readings_5m_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('iotsphere.rollup_deferred', true) = 'on' THEN
        INSERT INTO pg_temp.readings_5m_pending
        SELECT tenant_id, device_id, metric,
               date_bin(INTERVAL '5 minutes', time, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
               count(*), sum(value), sum(value * value), min(value), max(value),
               min(time), (min(ARRAY[date_part('epoch', time), value]))[2],
               max(time), (max(ARRAY[date_part('epoch', time), value]))[2]
        FROM new_rows
        GROUP BY tenant_id, device_id, metric, 4;
        RETURN NULL;
    END IF;
    INSERT INTO readings_5m AS r
    SELECT tenant_id, device_id, metric,
           date_bin(INTERVAL '5 minutes', time, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
           count(*), sum(value), sum(value * value), min(value), max(value),
           min(time), (min(ARRAY[date_part('epoch', time), value]))[2],
           max(time), (max(ARRAY[date_part('epoch', time), value]))[2]
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
