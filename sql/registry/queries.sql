-- Named queries of the Device Registry. Every query is scoped by tenant_id ($1).

-- name: devices_by_ids
SELECT * FROM devices WHERE tenant_id = $1 AND id = ANY($2::uuid[]);

-- name: page_devices
-- A template: {columns} {where} {bounds} {beyond} {order} {limit} are filled by
-- RegistryStore.page_devices with fragments compiled from the fixed grammars of
-- gateway/stores/predicates.py and pages.py ($n placeholders only; $1 is the tenant);
-- {columns} names device columns from registry.DEVICE_ROW_COLUMNS only.
-- One round trip for a page (one extra row tells the fetch direction's flag), its
-- totalCount, and whether rows lie past the cursor on the other side. The count row
-- always exists, so a page past the end still reports the total; page columns are then
-- NULL.
SELECT t.total_count, t.beyond, p.*
FROM (SELECT (SELECT count(*) FROM devices d WHERE d.tenant_id = $1 AND {where})
                 AS total_count,
             {beyond} AS beyond) t
LEFT JOIN LATERAL (
    SELECT {columns} FROM devices d
    WHERE d.tenant_id = $1 AND {where} AND {bounds}
    ORDER BY {order}
    LIMIT {limit}
) p ON true;

-- name: api_key_by_hash
-- Authentication by key. last_used_at moves at most once a minute per key: on every other
-- request the UPDATE matches no row, so a request costs one index lookup and no write.
-- Concurrent requests of a stale key queue on its row lock and then re-check, so only one
-- writes. The device status lets a key of a decommissioned device fail.
WITH k AS (
    SELECT k.id, k.tenant_id, k.role, k.name, k.device_id, k.last_used_at
    FROM api_keys k
    WHERE k.key_hash = $1 AND k.revoked_at IS NULL
), touched AS (
    UPDATE api_keys a SET last_used_at = now()
    FROM k
    WHERE a.id = k.id
      AND (a.last_used_at IS NULL OR a.last_used_at < now() - interval '1 minute')
)
SELECT k.*, d.status AS device_status
FROM k LEFT JOIN devices d ON d.id = k.device_id;

-- name: insert_tenant
INSERT INTO tenants (name) VALUES ($1) RETURNING *;

-- name: tenant_by_name
SELECT * FROM tenants WHERE name = $1;

-- name: list_tenants
SELECT * FROM tenants ORDER BY created_at, name;

-- name: insert_api_key
-- A device key ($5) only for a live device of the same tenant: no row back otherwise.
INSERT INTO api_keys (tenant_id, name, key_hash, role, device_id)
SELECT $1, $2, $3, $4, $5
WHERE $5::uuid IS NULL OR EXISTS (
    SELECT 1 FROM devices
    WHERE tenant_id = $1 AND id = $5 AND status <> 'DECOMMISSIONED'
)
RETURNING id, tenant_id, name, role, device_id, created_at, last_used_at, revoked_at;

-- name: page_api_keys
-- A page of the tenant's keys (never their hashes) and the total, as page_devices does.
WITH filtered AS (
    SELECT id, tenant_id, name, role, device_id, created_at, last_used_at, revoked_at
    FROM api_keys
    WHERE tenant_id = $1 AND ($2::boolean OR revoked_at IS NULL)
)
SELECT t.total_count, p.*
FROM (SELECT count(*) AS total_count FROM filtered) t
LEFT JOIN LATERAL (
    SELECT * FROM filtered f
    WHERE $3::timestamptz IS NULL OR (f.created_at, f.id) > ($3, $4::uuid)
    ORDER BY f.created_at, f.id
    LIMIT $5
) p ON true;

-- name: lock_tenant
-- Serialises key revocations of one tenant (see revoke_api_key).
SELECT id FROM tenants WHERE id = $1 FOR UPDATE;

-- name: revoke_api_key
-- Run after lock_tenant in the same transaction, so two admins cannot revoke the last two
-- admin keys at once. Revokes the key unless it is the tenant's last active admin key
-- (refused = true); a key revoked before keeps its first revocation time. No row: no such
-- key in this tenant.
WITH target AS (
    SELECT id, tenant_id, name, role, device_id, created_at, last_used_at, revoked_at
    FROM api_keys WHERE tenant_id = $1 AND id = $2
), verdict AS (
    SELECT t.role = 'admin' AND t.revoked_at IS NULL AND NOT EXISTS (
        SELECT 1 FROM api_keys o
        WHERE o.tenant_id = $1 AND o.role = 'admin' AND o.revoked_at IS NULL AND o.id <> $2
    ) AS refused
    FROM target t
), revoked AS (
    UPDATE api_keys k SET revoked_at = now()
    FROM verdict v
    WHERE k.tenant_id = $1 AND k.id = $2 AND k.revoked_at IS NULL AND NOT v.refused
    RETURNING k.revoked_at
)
SELECT t.id, t.tenant_id, t.name, t.role, t.device_id, t.created_at, t.last_used_at,
       coalesce(t.revoked_at, (SELECT revoked_at FROM revoked)) AS revoked_at, v.refused
FROM target t CROSS JOIN verdict v;

-- name: jwt_subject
-- What a verified token names: does its tenant exist, and (for role device) the status of
-- its device in that tenant (NULL: no such device there).
SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1) AS tenant_exists,
       (SELECT status FROM devices WHERE tenant_id = $1 AND id = $2) AS device_status;

-- name: insert_device
INSERT INTO devices (tenant_id, serial, name, type, status, firmware_version, labels)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *;

-- name: register_device
-- The device and its first credential in one statement: both exist, or neither.
WITH d AS (
    INSERT INTO devices (tenant_id, id, serial, name, type, firmware_version, labels)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    RETURNING *
), c AS (
    INSERT INTO device_credentials (tenant_id, id, device_id, secret_hash)
    SELECT $1, $8, d.id, $9 FROM d
)
SELECT * FROM d;

-- name: update_device
UPDATE devices
SET name = coalesce($3, name), type = coalesce($4, type), labels = coalesce($5, labels),
    firmware_version = coalesce($6, firmware_version), updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING *;

-- name: update_device_with_profile
-- update_device plus the profile part as an intent (migration 004), in one statement:
-- both commit, or neither. The device's row is locked first, so its intents are numbered
-- in commit order. No row back: no such device.
WITH d AS (
    UPDATE devices
    SET name = coalesce($3, name), type = coalesce($4, type), labels = coalesce($5, labels),
        firmware_version = coalesce($6, firmware_version), updated_at = now()
    WHERE tenant_id = $1 AND id = $2
    RETURNING *
), v AS (
    INSERT INTO profile_versions (device_id, seq) SELECT id, 1 FROM d
    ON CONFLICT (device_id) DO UPDATE SET seq = profile_versions.seq + 1
    RETURNING seq
), i AS (
    INSERT INTO profile_intents (device_id, seq, tenant_id, metadata_patch, capabilities)
    SELECT $2, v.seq, $1, $7, $8 FROM v
)
SELECT d.*, v.seq AS profile_seq FROM d, v;

-- name: profile_intents_of
-- A device's intents not yet known to be applied, in order.
SELECT * FROM profile_intents WHERE device_id = $1 ORDER BY seq;

-- name: forget_profile_intents
-- Intents up to $2 are applied: the asset DB says so.
DELETE FROM profile_intents WHERE device_id = $1 AND seq <= $2;

-- name: devices_with_profile_intents
-- The reconciler's scan: devices with an intent older than $3, in id order after $1.
SELECT DISTINCT device_id FROM profile_intents
WHERE device_id > $1 AND created_at < $3
ORDER BY device_id LIMIT $2;

-- name: set_status
-- Only from the statuses ($4) the transition allows; no row back means not allowed
-- (or no such device: the caller tells the two apart).
UPDATE devices SET status = $3, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = ANY($4::text[])
RETURNING *;

-- name: decommission
WITH d AS (
    UPDATE devices SET status = 'DECOMMISSIONED', updated_at = now()
    WHERE tenant_id = $1 AND id = $2
    RETURNING *
), c AS (
    UPDATE device_credentials SET revoked_at = now()
    WHERE tenant_id = $1 AND device_id = $2 AND revoked_at IS NULL
), k AS (
    UPDATE api_keys SET revoked_at = now()
    WHERE tenant_id = $1 AND device_id = $2 AND revoked_at IS NULL
)
SELECT * FROM d;

-- name: touch_last_seen
-- lastSeenAt = the newest reading time received per device; never goes back. The rows
-- are locked in id order first: two ingests touching the same devices in different
-- orders would otherwise deadlock (the join's order follows the input's).
WITH x AS (
    SELECT * FROM unnest($2::uuid[], $3::timestamptz[]) AS x(id, seen)
), locked AS MATERIALIZED (
    SELECT d.id, x.seen FROM devices d JOIN x ON d.id = x.id
    WHERE d.tenant_id = $1 AND (d.last_seen_at IS NULL OR d.last_seen_at < x.seen)
    ORDER BY d.id
    FOR UPDATE OF d
)
UPDATE devices d
SET last_seen_at = greatest(d.last_seen_at, locked.seen)
FROM locked
WHERE d.id = locked.id;

-- name: decommissioned_ids
SELECT tenant_id, id FROM devices WHERE status = 'DECOMMISSIONED' AND id > $1
ORDER BY id LIMIT $2;

-- name: existing_ids
SELECT id FROM devices WHERE id = ANY($1::uuid[]);

-- name: credentials_of
SELECT * FROM device_credentials WHERE tenant_id = $1 AND device_id = $2 ORDER BY created_at;

-- name: live_device_ids
SELECT id FROM devices WHERE tenant_id = $1 AND status <> 'DECOMMISSIONED';

-- name: page_devices_grouped
-- page_devices for many parents at once (a template filled the same way): $2/$3 pair
-- each parent (root) with a device id; every root gets its filtered total, its flag for
-- rows past the cursor, and its first {limit} devices in the page's fetch order.
WITH filtered AS (
    SELECT p.root, d.*
    FROM unnest($2::uuid[], $3::uuid[]) AS p(root, id)
    JOIN devices d ON d.id = p.id
    WHERE d.tenant_id = $1 AND {where}
), totals AS (
    SELECT d.root, count(*) AS total_count, {beyond} AS beyond
    FROM filtered d GROUP BY d.root
), ranked AS (
    SELECT d.*, row_number() OVER (PARTITION BY d.root ORDER BY {order}) AS rn
    FROM filtered d
    WHERE {bounds}
)
SELECT t.root AS page_root, t.total_count AS page_total, t.beyond AS page_beyond, r.*
FROM totals t
LEFT JOIN ranked r ON r.root = t.root AND r.rn <= {limit}
ORDER BY t.root, r.rn;

-- name: device_credentials_for_auth
-- Authentication of a device by its own id: the tenant is what this finds out.
SELECT c.id, c.secret_hash, d.tenant_id, d.status
FROM device_credentials c
JOIN devices d ON d.id = c.device_id
WHERE c.device_id = $1 AND c.revoked_at IS NULL;

-- name: revoke_token
-- A jti revoked twice keeps one row (the later expiry wins); a subject may be cut off
-- at several times, the latest counting.
INSERT INTO revoked_tokens (tenant_id, jti, subject, issued_before, expires_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id, jti) WHERE jti IS NOT NULL
DO UPDATE SET expires_at = CASE
    WHEN revoked_tokens.expires_at IS NULL OR EXCLUDED.expires_at IS NULL THEN NULL
    ELSE greatest(revoked_tokens.expires_at, EXCLUDED.expires_at) END
RETURNING id, tenant_id, jti, subject, issued_before, expires_at, revoked_at;

-- name: live_revoked_tokens
-- Every replica's in-memory copy: revocations whose tokens may still be presented.
SELECT tenant_id, jti, subject, issued_before
FROM revoked_tokens
WHERE expires_at IS NULL OR expires_at > now();

-- name: count_devices
-- A template ({where} as in page_devices): the filtered devices counted in total, by
-- status, by type, and per root of the (root, device) pairs $2/$3, in one statement.
WITH f AS MATERIALIZED (
    SELECT d.id, d.status, d.type FROM devices d WHERE d.tenant_id = $1 AND {where}
)
SELECT 'total' AS dim, NULL AS key, count(*) AS n FROM f
UNION ALL
SELECT 'status', f.status, count(*) FROM f GROUP BY f.status
UNION ALL
SELECT 'type', f.type, count(*) FROM f GROUP BY f.type
UNION ALL
SELECT 'asset', p.root::text, count(*)
FROM unnest($2::uuid[], $3::uuid[]) AS p(root, id)
JOIN f ON f.id = p.id
GROUP BY p.root;
