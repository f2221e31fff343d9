-- Asset DB: the site > line > machine hierarchy and per-device metadata (JSONB).
CREATE TABLE assets (
    tenant_id   uuid NOT NULL,
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    parent_id   uuid REFERENCES assets (id),
    -- Ids from the root down to this asset itself: subtree = path @> ARRAY[id],
    -- ancestors = path minus the last element, both without recursion.
    path        uuid[] NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL,
    attributes  jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (path[array_length(path, 1)] = id)
);
CREATE INDEX assets_page ON assets (tenant_id, created_at, id);
CREATE INDEX assets_parent ON assets (parent_id);
CREATE INDEX assets_path ON assets USING gin (path);
CREATE INDEX assets_attributes ON assets USING gin (attributes jsonb_path_ops);

CREATE TABLE device_profiles (
    tenant_id     uuid NOT NULL,
    device_id     uuid PRIMARY KEY,
    asset_id      uuid REFERENCES assets (id),
    metadata      jsonb NOT NULL DEFAULT '{}',
    capabilities  jsonb NOT NULL DEFAULT '[]',
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_profiles_asset ON device_profiles (asset_id);
CREATE INDEX device_profiles_metadata ON device_profiles USING gin (metadata jsonb_path_ops);
