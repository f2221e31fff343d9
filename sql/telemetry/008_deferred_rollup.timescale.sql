-- The continuous aggregate is refreshed by TimescaleDB, not by the inserting transaction:
-- nothing to defer or merge (see 008_deferred_rollup.partitioned.sql for why the
-- partitioned variant does). The same functions exist so POST /ingest calls them alike.
CREATE FUNCTION readings_rollup_defer() RETURNS void LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
CREATE FUNCTION readings_rollup_merge() RETURNS void LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
