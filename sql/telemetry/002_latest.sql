-- The newest reading per (device, metric), maintained on ingest, so `latest` is one
-- primary-key lookup however long the history grows.
CREATE TABLE latest_readings (
    tenant_id  uuid NOT NULL,
    device_id  uuid NOT NULL,
    metric     text NOT NULL,
    time       timestamptz NOT NULL,
    value      double precision NOT NULL,
    PRIMARY KEY (device_id, metric)
);
