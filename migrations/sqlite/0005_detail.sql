-- Free notes on carriers and routes: VoIPBIN's `detail` (issue 18, the /v1.0 API).
ALTER TABLE carriers ADD COLUMN detail TEXT NOT NULL DEFAULT '';
ALTER TABLE outbound_routes ADD COLUMN detail TEXT NOT NULL DEFAULT '';
