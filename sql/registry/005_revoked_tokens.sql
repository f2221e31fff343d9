-- JWT revocations (revokeToken): one token by its jti, or every token of a subject issued
-- before a time. Each replica holds the live ones in memory (gateway/stores/revoked_tokens.py)
-- and re-reads them every 30 s; announcements over Redis reach it sooner. A row is kept
-- until expires_at (the revoked tokens' exp, when the admin gave it), else for ever.
CREATE TABLE revoked_tokens (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    jti           text,
    subject       text,
    issued_before timestamptz,
    expires_at    timestamptz,
    revoked_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT revoked_tokens_one_kind CHECK (
        (jti IS NOT NULL AND subject IS NULL AND issued_before IS NULL)
        OR (jti IS NULL AND subject IS NOT NULL AND issued_before IS NOT NULL))
);

CREATE UNIQUE INDEX revoked_tokens_jti ON revoked_tokens (tenant_id, jti) WHERE jti IS NOT NULL;
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
