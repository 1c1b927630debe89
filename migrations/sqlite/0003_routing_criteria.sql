-- Routing criteria beyond the prefix (issue 5). Same schema on both backends. Costs are integer
-- micro-units of the platform currency (never floats) with the currency code beside them, both
-- set or both NULL; a schedule is JSON text ({"time_zone": …, "windows": […]}). Every new column
-- is nullable: NULL means "no such criterion", so existing rows keep routing as before.

ALTER TABLE tenants ADD COLUMN max_cost_micros BIGINT;
ALTER TABLE tenants ADD COLUMN max_cost_currency TEXT;

ALTER TABLE carriers ADD COLUMN cost_micros BIGINT;
ALTER TABLE carriers ADD COLUMN cost_currency TEXT;

ALTER TABLE outbound_routes ADD COLUMN cost_micros BIGINT;
ALTER TABLE outbound_routes ADD COLUMN cost_currency TEXT;
ALTER TABLE outbound_routes ADD COLUMN weight BIGINT;
ALTER TABLE outbound_routes ADD COLUMN caller_prefix TEXT;
ALTER TABLE outbound_routes ADD COLUMN caller_regex TEXT;
ALTER TABLE outbound_routes ADD COLUMN schedule TEXT;
