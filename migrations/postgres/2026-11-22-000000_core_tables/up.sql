-- Ids are prefixed ULIDs (text), so ordering by id is ordering by creation time.
-- Timestamps hold UTC without a zone, the one timestamp type both backends share.
-- Every organization-scoped table carries organization_id, the future shard key.

CREATE TABLE organizations (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE orchestrators (
    id TEXT NOT NULL PRIMARY KEY,
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT orchestrators_slug_key UNIQUE (slug)
);

CREATE TABLE destinations (
    id TEXT NOT NULL PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    slug TEXT NOT NULL,
    display_name TEXT NOT NULL,
    payment_address TEXT,
    max_agents INTEGER NOT NULL,
    pending_claim_ttl_seconds INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT destinations_slug_key UNIQUE (slug),
    -- Serves the per-organization list, and lets keys reference (organization, destination).
    CONSTRAINT destinations_organization_id_id_key UNIQUE (organization_id, id)
);

CREATE TABLE api_keys (
    id TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,
    organization_id TEXT REFERENCES organizations (id),
    destination_id TEXT,
    orchestrator_id TEXT REFERENCES orchestrators (id),
    key_hash TEXT NOT NULL,
    prefix TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP,
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash),
    -- A destination key belongs to a destination of its own organization.
    CONSTRAINT api_keys_destination_fkey FOREIGN KEY (organization_id, destination_id)
        REFERENCES destinations (organization_id, id),
    -- Exactly the owner columns of its kind are set.
    CONSTRAINT api_keys_owner_check CHECK (
        (kind = 'platform' AND organization_id IS NOT NULL
            AND destination_id IS NULL AND orchestrator_id IS NULL)
        OR (kind = 'destination' AND organization_id IS NOT NULL
            AND destination_id IS NOT NULL AND orchestrator_id IS NULL)
        OR (kind = 'orchestrator' AND organization_id IS NULL
            AND destination_id IS NULL AND orchestrator_id IS NOT NULL)
    )
);

CREATE INDEX api_keys_organization_id_destination_id_idx ON api_keys (organization_id, destination_id);
CREATE INDEX api_keys_orchestrator_id_idx ON api_keys (orchestrator_id);
