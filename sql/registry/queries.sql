-- Named queries of the Device Registry. Every query is scoped by tenant_id ($1).

-- name: devices_by_ids
SELECT * FROM devices WHERE tenant_id = $1 AND id = ANY($2::uuid[]);

-- name: page_devices
-- One round trip for a page and its totalCount. The count row always exists, so a page
-- past the end still reports the total; page columns are then NULL.
WITH filtered AS (
    SELECT * FROM devices
    WHERE tenant_id = $1
      AND ($2::text[] IS NULL OR status = ANY($2))
      AND ($3::text[] IS NULL OR type = ANY($3))
      AND ($4::text[] IS NULL OR labels @> $4)
      AND ($5::text IS NULL OR name ILIKE $5 OR serial ILIKE $5)
      AND ($6::uuid[] IS NULL OR id = ANY($6))
)
SELECT t.total_count, p.*
FROM (SELECT count(*) AS total_count FROM filtered) t
LEFT JOIN LATERAL (
    SELECT * FROM filtered f
    WHERE $7::timestamptz IS NULL OR (f.created_at, f.id) > ($7, $8::uuid)
    ORDER BY f.created_at, f.id
    LIMIT $9
) p ON true;

-- name: api_key_by_hash
SELECT k.id, k.tenant_id, k.role, k.name
FROM api_keys k
WHERE k.key_hash = $1 AND k.revoked_at IS NULL;

-- name: insert_tenant
INSERT INTO tenants (name) VALUES ($1) RETURNING *;

-- name: tenant_by_name
SELECT * FROM tenants WHERE name = $1;

-- name: list_tenants
SELECT * FROM tenants ORDER BY created_at, name;

-- name: insert_api_key
INSERT INTO api_keys (tenant_id, name, key_hash, role) VALUES ($1, $2, $3, $4) RETURNING *;

-- name: insert_device
INSERT INTO devices (tenant_id, serial, name, type, status, firmware_version, labels)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *;
