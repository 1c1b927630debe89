-- What the lease holder last verified on a node, kept where every instance reads it, so a
-- standby instance shows the same state of the node as its holder (issue 22): the
-- configuration version the node was synced to and the holder's last error there.
ALTER TABLE switch_sync ADD COLUMN synced_version BIGINT;
ALTER TABLE switch_sync ADD COLUMN last_error TEXT;
