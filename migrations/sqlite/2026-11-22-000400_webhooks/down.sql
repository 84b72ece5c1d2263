DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
DROP INDEX events_fanout_idx;
DROP INDEX events_orchestrator_id_id_idx;
DROP INDEX events_destination_id_id_idx;
ALTER TABLE events DROP COLUMN fanout_lease_until;
ALTER TABLE events DROP COLUMN fanned_out;
ALTER TABLE events DROP COLUMN family;
ALTER TABLE events DROP COLUMN endpoint_id;
