-- The extensions stay: other objects in the database may use them.
DROP FUNCTION seat_map_capacity(jsonb);

DROP FUNCTION is_iana_timezone(text);

DROP FUNCTION set_update_time_and_version();

DROP FUNCTION set_update_time();
