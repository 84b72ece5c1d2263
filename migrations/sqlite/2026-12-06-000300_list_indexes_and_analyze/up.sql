-- The same index shape as on PostgreSQL: a client's list (its own requests on its
-- destination, newest first) matches it exactly and is read in order.
CREATE INDEX payment_requests_destination_id_client_id_id_idx
    ON payment_requests (destination_id, client_id, id);
DROP INDEX payment_requests_client_id_id_idx;

-- Nothing for PostgreSQL's per-table autovacuum settings: SQLite keeps no statistics until
-- `ANALYZE` runs, which Mandate never does, so its planner chooses by index shape alone and
-- no estimate can go stale while a table grows.
