-- Device Registry: identity, credentials, status. Strong consistency lives here.
CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    serial           text NOT NULL,
    name             text NOT NULL,
    type             text NOT NULL,
    status           text NOT NULL DEFAULT 'PROVISIONED'
                     CHECK (status IN ('PROVISIONED', 'ACTIVE', 'SUSPENDED', 'DECOMMISSIONED')),
    firmware_version text,
    labels           text[] NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz,
    UNIQUE (tenant_id, serial)
);
-- Keyset pagination walks (tenant, created_at, id).
CREATE INDEX devices_page ON devices (tenant_id, created_at, id);
CREATE INDEX devices_labels ON devices USING gin (labels);

CREATE TABLE device_credentials (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    device_id    uuid NOT NULL REFERENCES devices (id),
    -- scrypt$N$r$p$salt$hash: a salted, slow hash; the secret itself is never stored.
    secret_hash  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX device_credentials_device ON device_credentials (device_id);

CREATE TABLE api_keys (
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL,
    -- sha256 of the whole key: keys are 256-bit random, so a fast hash is enough and
    -- lets a request find its key by an index lookup.
    key_hash      bytea NOT NULL UNIQUE,
    role          text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer', 'device')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
