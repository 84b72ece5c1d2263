ALTER TABLE idempotency_keys
    RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE webhook_deliveries
    RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE events
    RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE payments
    RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE payment_requests
    RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);

CREATE INDEX payment_requests_client_id_id_idx ON payment_requests (client_id, id);
DROP INDEX payment_requests_destination_id_client_id_id_idx;
