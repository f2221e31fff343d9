-- The number of the last registry profile intent applied to this profile (see
-- sql/registry/004_profile_intents.sql): an intent applies only right after its
-- predecessor, so a late or repeated one changes nothing.
ALTER TABLE device_profiles ADD COLUMN applied_seq bigint NOT NULL DEFAULT 0;
