DROP INDEX claims_client_id_idx;
