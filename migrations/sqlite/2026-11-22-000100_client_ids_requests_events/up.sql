-- Client IDs, payment requests with their payments and links, and the event outbox.
-- Amounts are the canonical decimal strings of the domain (exact, never floating point);
-- metadata and event data are JSON text; versions count changes for optimistic concurrency.

CREATE TABLE client_ids (
    id TEXT NOT NULL PRIMARY KEY,
    organization_id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    orchestrator_id TEXT NOT NULL REFERENCES orchestrators (id),
    label TEXT,
    -- Space-separated permission strings, sorted.
    permissions TEXT NOT NULL,
    version BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT client_ids_destination_fkey FOREIGN KEY (organization_id, destination_id)
        REFERENCES destinations (organization_id, id),
    -- Serves the per-destination list, and lets requests reference (destination, client ID).
    CONSTRAINT client_ids_destination_id_id_key UNIQUE (destination_id, id),
    CONSTRAINT client_ids_status_check CHECK (status IN ('active', 'revoked'))
);

CREATE INDEX client_ids_organization_id_id_idx ON client_ids (organization_id, id);
CREATE INDEX client_ids_orchestrator_id_id_idx ON client_ids (orchestrator_id, id);

CREATE TABLE payment_requests (
    id TEXT NOT NULL PRIMARY KEY,
    organization_id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_paid TEXT NOT NULL,
    status TEXT NOT NULL,
    customer_id TEXT,
    reference TEXT,
    description TEXT,
    due_at TIMESTAMP,
    expires_at TIMESTAMP,
    metadata TEXT NOT NULL,
    created_by TEXT NOT NULL,
    client_id TEXT,
    version BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT payment_requests_destination_fkey FOREIGN KEY (organization_id, destination_id)
        REFERENCES destinations (organization_id, id),
    -- A request is created through a client ID of its own destination, or by an owner (null).
    CONSTRAINT payment_requests_client_id_fkey FOREIGN KEY (destination_id, client_id)
        REFERENCES client_ids (destination_id, id),
    -- Serves the per-destination list, and lets payments and links reference
    -- (destination, request).
    CONSTRAINT payment_requests_destination_id_id_key UNIQUE (destination_id, id),
    CONSTRAINT payment_requests_direction_check CHECK (direction IN ('incoming', 'outgoing')),
    CONSTRAINT payment_requests_status_check
        CHECK (status IN ('open', 'partially_paid', 'paid', 'cancelled', 'expired'))
);

CREATE INDEX payment_requests_organization_id_id_idx ON payment_requests (organization_id, id);
CREATE INDEX payment_requests_client_id_id_idx ON payment_requests (client_id, id);
-- The expiry job's queue: only pending requests. The query repeats this predicate literally
-- so that the planner can prove the index applies.
CREATE INDEX payment_requests_expiry_idx ON payment_requests (expires_at, id)
    WHERE status IN ('open', 'partially_paid');

CREATE TABLE payments (
    id TEXT NOT NULL PRIMARY KEY,
    organization_id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    reference TEXT NOT NULL,
    paid_at TIMESTAMP NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT payments_destination_fkey FOREIGN KEY (organization_id, destination_id)
        REFERENCES destinations (organization_id, id),
    CONSTRAINT payments_request_fkey FOREIGN KEY (destination_id, request_id)
        REFERENCES payment_requests (destination_id, id)
);

CREATE INDEX payments_request_id_id_idx ON payments (request_id, id);

CREATE TABLE payment_links (
    id TEXT NOT NULL PRIMARY KEY,
    organization_id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT payment_links_token_hash_key UNIQUE (token_hash),
    CONSTRAINT payment_links_destination_fkey FOREIGN KEY (organization_id, destination_id)
        REFERENCES destinations (organization_id, id),
    CONSTRAINT payment_links_request_fkey FOREIGN KEY (destination_id, request_id)
        REFERENCES payment_requests (destination_id, id)
);

CREATE INDEX payment_links_request_id_idx ON payment_links (request_id);

-- The outbox: written in the transaction of the change it describes. The audience columns
-- are what the feed and the webhooks filter on. No foreign keys: an event records what was
-- true when it happened, whatever becomes of its subject.
CREATE TABLE events (
    id TEXT NOT NULL PRIMARY KEY,
    organization_id TEXT,
    destination_id TEXT,
    orchestrator_id TEXT,
    client_id TEXT,
    direction TEXT,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE INDEX events_organization_id_id_idx ON events (organization_id, id);
