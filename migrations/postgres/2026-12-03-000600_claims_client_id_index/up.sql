-- An agent's requests read its client ID with the expiry of the approval that created it.
CREATE INDEX claims_client_id_idx ON claims (client_id);
