CREATE INDEX payment_requests_client_id_id_idx ON payment_requests (client_id, id);
DROP INDEX payment_requests_destination_id_client_id_id_idx;
