DROP TABLE ledger_entries;
DROP TABLE ledger_queue;
DROP TABLE signature_nonces;
DROP TABLE claim_nonces;
DROP TABLE claims;
ALTER TABLE client_ids DROP COLUMN agent_public_key;
