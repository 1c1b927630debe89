-- Caller-ID policy per tenant and caller-ID format per carrier (issue 19), each one JSON
-- object parsed through the model's validated types; '{}' is every default.
ALTER TABLE tenants ADD COLUMN caller_id_policy TEXT NOT NULL DEFAULT '{}';
ALTER TABLE carriers ADD COLUMN caller_id TEXT NOT NULL DEFAULT '{}';
