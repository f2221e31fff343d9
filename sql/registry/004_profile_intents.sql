-- updateDevice's outbox. A device's profile (metadata, capabilities) lives in the asset
-- DB; its other fields here. The registry commit is the mutation's commit point: it
-- records, in the same statement as the device's fields, an intent holding the profile
-- part, numbered per device (profile_versions.seq, incremented under the row lock, so
-- intents of one device are numbered in commit order with no gaps). The writer applies it
-- to the asset DB afterwards, in order and idempotently (the profile remembers the last
-- number applied), then deletes it; an intent whose writer never got that far (its
-- commit's answer was lost, the asset DB was down, the process died) is completed by the
-- reconciler. Nothing is ever compensated, so a hidden commit cannot be undone by mistake.
CREATE TABLE profile_versions (
    device_id  uuid PRIMARY KEY REFERENCES devices (id),
    seq        bigint NOT NULL
);

CREATE TABLE profile_intents (
    device_id       uuid NOT NULL REFERENCES devices (id),
    seq             bigint NOT NULL,
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    metadata_patch  jsonb,  -- an RFC 7396 merge patch; null: metadata unchanged
    capabilities    jsonb,  -- the new list; null: unchanged
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX profile_intents_created ON profile_intents (created_at);
