-- Indexes for devices filters (docs/connections.md), so a filtered page of a 100,000-device
-- fleet reads only what it returns (bench/filtered_page.py).
-- search (ILIKE '%text%' on name or serial): trigram GIN indexes, one per column, that the
-- planner ORs together and ANDs with the tenant.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX devices_name_trgm ON devices USING gin (name gin_trgm_ops);
CREATE INDEX devices_serial_trgm ON devices USING gin (serial gin_trgm_ops);
-- namePrefix: lower(name) LIKE 'prefix%', whatever the database collation.
CREATE INDEX devices_name_prefix ON devices (tenant_id, lower(name) text_pattern_ops);
-- lastSeenAt lt/lte/gt/gte and never (IS NULL) on the column itself.
CREATE INDEX devices_last_seen ON devices (tenant_id, last_seen_at);
