-- Agents' claims, the nonces that make their submissions and signatures single-use, and the
-- per-organization ledger of approvals and revocations (hash-chained).

-- A client ID created by approving a claim: its only credential is the agent's key.
ALTER TABLE client_ids ADD COLUMN agent_public_key TEXT;

CREATE TABLE claims (
    id TEXT NOT NULL PRIMARY KEY,
    organization_id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    orchestrator_id TEXT NOT NULL REFERENCES orchestrators (id),
    service TEXT NOT NULL,
    public_key TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    agent_name TEXT NOT NULL,
    subject TEXT,
    ip_address TEXT NOT NULL,
    -- Space-separated permission strings, sorted.
    permissions TEXT NOT NULL,
    status TEXT NOT NULL,
    client_id TEXT,
    pending_expires_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    ledger_status TEXT,
    version BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT claims_destination_fkey FOREIGN KEY (organization_id, destination_id)
        REFERENCES destinations (organization_id, id),
    CONSTRAINT claims_client_id_fkey FOREIGN KEY (destination_id, client_id)
        REFERENCES client_ids (destination_id, id),
    CONSTRAINT claims_status_check
        CHECK (status IN ('pending', 'approved', 'rejected', 'revoked', 'expired')),
    CONSTRAINT claims_ledger_status_check CHECK (ledger_status IN ('queued', 'recorded'))
);

-- One live (pending or approved) claim per key, and per agent id, for a destination and an
-- orchestrator: concurrent submissions cannot both create one. The first also counts a
-- destination's approved agents.
CREATE UNIQUE INDEX claims_live_public_key_key
    ON claims (destination_id, orchestrator_id, public_key)
    WHERE status IN ('pending', 'approved');
CREATE UNIQUE INDEX claims_live_agent_id_key
    ON claims (destination_id, orchestrator_id, agent_id)
    WHERE status IN ('pending', 'approved');
-- The lists: per organization, destination, orchestrator; newest first.
CREATE INDEX claims_organization_id_id_idx ON claims (organization_id, id);
CREATE INDEX claims_destination_id_id_idx ON claims (destination_id, id);
CREATE INDEX claims_orchestrator_id_id_idx ON claims (orchestrator_id, id);
-- The expiry job's queues; the queries repeat these predicates literally.
CREATE INDEX claims_pending_expiry_idx ON claims (pending_expires_at) WHERE status = 'pending';
CREATE INDEX claims_approval_expiry_idx ON claims (expires_at) WHERE status = 'approved';

-- Body nonces of claim submissions: never reusable by the same orchestrator.
CREATE TABLE claim_nonces (
    orchestrator_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (orchestrator_id, nonce)
);

-- Signature nonces, once per key; kept a little longer than a signature stays acceptable.
CREATE TABLE signature_nonces (
    public_key TEXT NOT NULL,
    nonce TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (public_key, nonce)
);

CREATE INDEX signature_nonces_created_at_idx ON signature_nonces (created_at);

-- Approvals and revocations waiting for the ledger step: written in the transaction of the
-- change, keyed by the id of the change's claim event, so that they append in order.
CREATE TABLE ledger_queue (
    event_id TEXT NOT NULL PRIMARY KEY,
    organization_id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    claim_id TEXT NOT NULL REFERENCES claims (id),
    action TEXT NOT NULL,
    public_key TEXT NOT NULL,
    at TIMESTAMP NOT NULL
);

-- Each organization's chain: hash = SHA-256(prev_hash || canonical entry).
CREATE TABLE ledger_entries (
    organization_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    destination_id TEXT NOT NULL,
    claim_id TEXT NOT NULL,
    action TEXT NOT NULL,
    public_key TEXT NOT NULL,
    at TIMESTAMP NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (organization_id, seq),
    CONSTRAINT ledger_entries_action_check CHECK (action IN ('approved', 'revoked', 'expired'))
);

CREATE INDEX ledger_entries_destination_id_seq_idx ON ledger_entries (destination_id, seq);
