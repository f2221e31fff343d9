-- One btree per devices order (orderBy), keyed like the keyset: (tenant, sort key, id).
-- A page in either direction is an index range scan from the cursor, read forwards or
-- backwards (gateway/stores/pages.py). createdAt already has devices_page.
CREATE INDEX devices_order_name ON devices (tenant_id, name, id);
CREATE INDEX devices_order_status ON devices (tenant_id, status, id);
CREATE INDEX devices_order_type ON devices (tenant_id, type, id);
-- Never seen sorts as the earliest time: the same expression as the LAST_SEEN_AT key.
CREATE INDEX devices_order_last_seen
    ON devices (tenant_id, coalesce(last_seen_at, '-infinity'::timestamptz), id);
