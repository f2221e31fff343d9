-- API keys managed through GraphQL: a key of role device stands for one device.
ALTER TABLE api_keys ADD COLUMN device_id uuid REFERENCES devices (id);

-- Device keys made before this column cannot say which device they stand for: without a
-- device they would read as a whole-tenant identity, so they stop working here.
UPDATE api_keys SET revoked_at = now() WHERE role = 'device' AND revoked_at IS NULL;

ALTER TABLE api_keys
    ADD CONSTRAINT api_keys_device_only_for_device_role
        CHECK (device_id IS NULL OR role = 'device'),
    ADD CONSTRAINT api_keys_device_role_needs_device
        CHECK (role <> 'device' OR device_id IS NOT NULL OR revoked_at IS NOT NULL);

-- apiKeys pages walk (tenant, created_at, id); this covers the old per-tenant index.
CREATE INDEX api_keys_page ON api_keys (tenant_id, created_at, id);
DROP INDEX api_keys_tenant;
CREATE INDEX api_keys_device ON api_keys (device_id) WHERE device_id IS NOT NULL;
