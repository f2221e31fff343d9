-- Named queries of the Asset DB. Every query is scoped by tenant_id ($1).

-- name: assets_by_ids
SELECT * FROM assets WHERE tenant_id = $1 AND id = ANY($2::uuid[]);

-- name: children_of
SELECT * FROM assets WHERE tenant_id = $1 AND parent_id = ANY($2::uuid[])
ORDER BY name, id;

-- name: profiles_by_device
-- The installed asset rides along (a_* columns), so Device.asset costs no second trip. Its
-- columns come once per asset, NULL on the other rows installed on it: a machine carries
-- many devices, and decoding every copy was over a third of this call's client CPU.
-- Capabilities come as text, parsed only by the fields that read them
-- (gateway.loaders.capabilities_of): most queries that load profiles read only metadata
-- or the asset, and decoding the jsonb was a quarter to a third of this call's client CPU.
SELECT p.device_id, p.asset_id, p.metadata, p.capabilities::text AS capabilities_json,
       a.id AS a_id, a.tenant_id AS a_tenant_id, a.parent_id AS a_parent_id, a.path AS a_path,
       a.name AS a_name, a.kind AS a_kind, a.attributes AS a_attributes,
       a.created_at AS a_created_at, a.updated_at AS a_updated_at
FROM (SELECT device_id, asset_id, metadata, capabilities, tenant_id,
             row_number() OVER (PARTITION BY asset_id ORDER BY device_id) AS nth
      FROM device_profiles
      WHERE tenant_id = $1 AND device_id = ANY($2::uuid[])) p
LEFT JOIN assets a ON p.nth = 1 AND a.id = p.asset_id AND a.tenant_id = p.tenant_id;

-- name: profiles_by_device_with_parents
-- profiles_by_device, and each installed asset's parent (pa_* columns, once per parent,
-- NULL on the other rows): the Device.asset { parent } of a dashboard without a second
-- round trip (resolvers.lookahead decides when the query asks for it).
WITH p AS (
    SELECT device_id, asset_id, metadata, capabilities,
           row_number() OVER (PARTITION BY asset_id ORDER BY device_id) AS nth
    FROM device_profiles
    WHERE tenant_id = $1 AND device_id = ANY($2::uuid[])
), a AS (
    SELECT a.*, row_number() OVER (PARTITION BY a.parent_id ORDER BY a.id) AS pnth
    FROM assets a
    WHERE a.tenant_id = $1 AND a.id IN (SELECT asset_id FROM p WHERE nth = 1)
)
SELECT p.device_id, p.asset_id, p.metadata, p.capabilities::text AS capabilities_json,
       a.id AS a_id, a.tenant_id AS a_tenant_id, a.parent_id AS a_parent_id, a.path AS a_path,
       a.name AS a_name, a.kind AS a_kind, a.attributes AS a_attributes,
       a.created_at AS a_created_at, a.updated_at AS a_updated_at,
       pa.id AS pa_id, pa.tenant_id AS pa_tenant_id, pa.parent_id AS pa_parent_id,
       pa.path AS pa_path, pa.name AS pa_name, pa.kind AS pa_kind,
       pa.attributes AS pa_attributes, pa.created_at AS pa_created_at,
       pa.updated_at AS pa_updated_at
FROM p
LEFT JOIN a ON p.nth = 1 AND a.id = p.asset_id
LEFT JOIN assets pa ON a.pnth = 1 AND pa.id = a.parent_id AND pa.tenant_id = $1;

-- name: device_ids_matching
-- Devices installed on the asset ($2) or below it, and/or whose metadata contains $3.
SELECT p.device_id
FROM device_profiles p
WHERE p.tenant_id = $1
  AND ($2::uuid IS NULL OR p.asset_id IN (
        SELECT a.id FROM assets a WHERE a.tenant_id = $1 AND a.path @> ARRAY[$2::uuid]))
  AND ($3::jsonb IS NULL OR p.metadata @> $3);

-- name: devices_under_roots
-- A fragment of AssetStore.device_ids_for (joined by UNION ALL, so no semicolon):
-- every device installed on each root ({roots}, a uuid[] parameter) or below it.
SELECT -1 AS leaf, r.id AS root, p.device_id, NULL::jsonb AS asset
FROM unnest({roots}) AS r(id)
JOIN assets a ON a.tenant_id = $1 AND a.path @> ARRAY[r.id]
JOIN device_profiles p ON p.tenant_id = $1 AND p.asset_id = a.id

-- name: devices_matching_condition
-- A fragment of AssetStore.device_ids_for: the devices whose profile matches one
-- asset-side condition ({where}, compiled by gateway/stores/predicates.py; {leaf} is the
-- condition's position).
SELECT {leaf} AS leaf, NULL::uuid AS root, p.device_id, NULL::jsonb AS asset
FROM device_profiles p
WHERE p.tenant_id = $1 AND {where}

-- name: children_with_devices
-- Fragments of AssetStore.overview: the children of {parent} (roots when it is NULL), each
-- row carrying the asset itself, then every device installed on each child or below it.
SELECT -2 AS leaf, c.id AS root, NULL::uuid AS device_id, to_jsonb(c) AS asset
FROM assets c
WHERE c.tenant_id = $1 AND c.parent_id IS NOT DISTINCT FROM {parent}
UNION ALL
SELECT -1 AS leaf, c.id AS root, p.device_id, NULL::jsonb AS asset
FROM assets c
JOIN assets a ON a.tenant_id = $1 AND a.path @> ARRAY[c.id]
JOIN device_profiles p ON p.tenant_id = $1 AND p.asset_id = a.id
WHERE c.tenant_id = $1 AND c.parent_id IS NOT DISTINCT FROM {parent}

-- name: page_assets
-- A template filled as the registry's page_devices is (see there), over assets.
SELECT t.total_count, t.beyond, p.*
FROM (SELECT (SELECT count(*) FROM assets a WHERE a.tenant_id = $1 AND {where})
                 AS total_count,
             {beyond} AS beyond) t
LEFT JOIN LATERAL (
    SELECT a.* FROM assets a
    WHERE a.tenant_id = $1 AND {where} AND {bounds}
    ORDER BY {order}
    LIMIT {limit}
) p ON true;

-- name: insert_asset
INSERT INTO assets (tenant_id, id, parent_id, path, name, kind, attributes)
SELECT $1, $2, $3, coalesce((SELECT path FROM assets WHERE id = $3 AND tenant_id = $1),
                            '{}'::uuid[]) || $2::uuid, $4, $5, $6
RETURNING *;

-- name: upsert_profile
INSERT INTO device_profiles (tenant_id, device_id, asset_id, metadata, capabilities)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (device_id) DO UPDATE
SET asset_id = EXCLUDED.asset_id, metadata = EXCLUDED.metadata,
    capabilities = EXCLUDED.capabilities, updated_at = now()
WHERE device_profiles.tenant_id = EXCLUDED.tenant_id;

-- name: lock_asset
SELECT * FROM assets WHERE tenant_id = $1 AND id = $2 FOR UPDATE;

-- name: lock_tree
-- Serializes moves within a tenant, so two concurrent moves cannot build a cycle.
SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0));

-- name: update_asset
UPDATE assets SET name = $3, kind = $4, attributes = $5, updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING *;

-- name: move_subtree
-- Rewrites the path of the asset ($2) and everything below it: the old prefix (the first
-- $4 elements) becomes the new one ($3, ending in $2); only the moved asset changes parent.
UPDATE assets
SET path = $3::uuid[] || path[$4 + 1:],
    parent_id = CASE WHEN id = $2 THEN $5 ELSE parent_id END
WHERE tenant_id = $1 AND path @> ARRAY[$2::uuid];

-- name: children_names
SELECT id, name FROM assets WHERE tenant_id = $1 AND parent_id = $2 ORDER BY name LIMIT $3;

-- name: installed_devices
SELECT device_id FROM device_profiles WHERE tenant_id = $1 AND asset_id = $2;

-- name: delete_asset
DELETE FROM assets WHERE tenant_id = $1 AND id = $2;

-- name: delete_profiles
DELETE FROM device_profiles WHERE tenant_id = $1 AND device_id = ANY($2::uuid[]);

-- name: lock_profile
SELECT * FROM device_profiles WHERE tenant_id = $1 AND device_id = $2 FOR UPDATE;

-- name: apply_profile_intent
-- A registry profile intent ($3: its number), only right after its predecessor.
UPDATE device_profiles SET metadata = $4, capabilities = $5, applied_seq = $3,
    updated_at = now()
WHERE tenant_id = $1 AND device_id = $2 AND applied_seq = $3 - 1;

-- name: set_device_asset
INSERT INTO device_profiles (tenant_id, device_id, asset_id) VALUES ($1, $2, $3)
ON CONFLICT (device_id) DO UPDATE SET asset_id = EXCLUDED.asset_id, updated_at = now()
WHERE device_profiles.tenant_id = EXCLUDED.tenant_id;

-- name: profiles_older_than
-- The reconciler's scan: profiles untouched since $3, in device-id order after $1.
SELECT tenant_id, device_id FROM device_profiles
WHERE device_id > $1 AND updated_at < $3
ORDER BY device_id LIMIT $2;

-- name: delete_orphan_profiles
DELETE FROM device_profiles WHERE device_id = ANY($1::uuid[]) AND updated_at < $2;

-- name: delete_stale_profiles
DELETE FROM device_profiles
WHERE tenant_id = $1 AND device_id = ANY($2::uuid[]) AND updated_at < $3;

-- name: device_ids_under_many
-- For each asset in $2: the devices installed on it or below it (metadata containing $3).
SELECT r.id AS root, p.device_id
FROM unnest($2::uuid[]) AS r(id)
JOIN assets a ON a.tenant_id = $1 AND a.path @> ARRAY[r.id]
JOIN device_profiles p ON p.tenant_id = $1 AND p.asset_id = a.id
WHERE $3::jsonb IS NULL OR p.metadata @> $3;
