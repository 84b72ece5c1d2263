-- A client's list (its own requests on its destination, newest first) matches this index
-- exactly: it is read in order and the page stops after `limit + 1` rows, whatever the
-- planner's statistics say. With `(client_id, id)` and `(destination_id, id)` only, a stale
-- estimate made the planner AND two bitmaps and sort every row of the client instead. The
-- index also serves the (destination, client ID) foreign key, so `(client_id, id)` goes.
CREATE INDEX payment_requests_destination_id_client_id_id_idx
    ON payment_requests (destination_id, client_id, id);
DROP INDEX payment_requests_client_id_id_idx;

-- The tables that grow with every call are re-analysed after about 1 % of new rows instead
-- of PostgreSQL's default 10 %, so that estimates follow a tenant that grows fast.
ALTER TABLE payment_requests
    SET (autovacuum_analyze_scale_factor = 0.01, autovacuum_analyze_threshold = 1000);
ALTER TABLE payments
    SET (autovacuum_analyze_scale_factor = 0.01, autovacuum_analyze_threshold = 1000);
ALTER TABLE events
    SET (autovacuum_analyze_scale_factor = 0.01, autovacuum_analyze_threshold = 1000);
ALTER TABLE webhook_deliveries
    SET (autovacuum_analyze_scale_factor = 0.01, autovacuum_analyze_threshold = 1000);
ALTER TABLE idempotency_keys
    SET (autovacuum_analyze_scale_factor = 0.01, autovacuum_analyze_threshold = 1000);
