-- Range comparisons at a JSON path of device metadata (gateway/stores/predicates.py,
-- JsonCmp): the value as a number or a time, NULL when it is of another type, so a device
-- whose value at the path is not comparable simply does not match (and never fails the
-- request). Equality at a path is containment, served by device_profiles_metadata.
CREATE FUNCTION iotsphere_jsonb_number(value jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN jsonb_typeof(value) = 'number' THEN value::numeric END $$;

-- STABLE, not IMMUTABLE: a string without an offset is read in the session's time zone.
CREATE FUNCTION iotsphere_jsonb_time(value jsonb) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    IF jsonb_typeof(value) IS DISTINCT FROM 'string' THEN
        RETURN NULL;
    END IF;
    RETURN (value #>> '{}')::timestamptz;
EXCEPTION WHEN data_exception THEN  -- SQLSTATE class 22: not a time
    RETURN NULL;
END
$$;
