-- One btree per assets order (orderBy), keyed like the keyset: (tenant, sort key, id).
-- createdAt already has assets_page.
CREATE INDEX assets_order_name ON assets (tenant_id, name, id);
CREATE INDEX assets_order_kind ON assets (tenant_id, kind, id);
