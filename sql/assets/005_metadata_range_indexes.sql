-- Indexable metadata time ranges (gateway/stores/metadata_indexes.py). A range on a
-- declared path (IOTSPHERE_METADATA_RANGE_PATHS) is served by an expression index over
-- the value at that path, and an index expression must be IMMUTABLE. Reading a string as
-- timestamptz is only STABLE (a string without an offset is read in the session's time
-- zone), so times are read here from ISO 8601 strings that carry their offset (`Z` or
-- `+hh[:mm]`): the result then depends on the string alone. Other strings (no offset,
-- another format, not a date) are not comparable and never match, as documented for
-- `timeGt`/`timeLt` (docs/connections.md). Every time comparison, declared path or not,
-- uses this function, so declaring a path changes speed, never answers.
CREATE FUNCTION iotsphere_jsonb_instant(value jsonb) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    text_value text;
BEGIN
    IF jsonb_typeof(value) IS DISTINCT FROM 'string' THEN
        RETURN NULL;
    END IF;
    text_value := value #>> '{}';
    IF text_value !~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|z|[+-]\d{2}(:?\d{2})?)$' THEN
        RETURN NULL;
    END IF;
    RETURN text_value::timestamptz;
EXCEPTION WHEN data_exception THEN  -- SQLSTATE class 22: a month 13, a February 30th
    RETURN NULL;
END
$$;
