-- Webhooks: endpoints, the log of delivery attempts (which is also the queue of pending ones),
-- and the fan-out state of each event. Workers on any number of replicas claim rows with
-- leases; a crashed worker's rows are claimed again when their lease ends.

-- The one endpoint a `webhook.*` / `webhook_endpoint.*` event is for.
ALTER TABLE events ADD COLUMN endpoint_id TEXT;
-- The part of event_type before the dot, what the feed's clauses filter on.
ALTER TABLE events ADD COLUMN family TEXT NOT NULL DEFAULT '';
UPDATE events SET family = split_part(event_type, '.', 1);
ALTER TABLE events ALTER COLUMN family DROP DEFAULT;
-- Events stored before endpoints existed have no receiver: they count as fanned out.
ALTER TABLE events ADD COLUMN fanned_out BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE events ALTER COLUMN fanned_out SET DEFAULT FALSE;
ALTER TABLE events ADD COLUMN fanout_lease_until TIMESTAMP;

CREATE INDEX events_destination_id_id_idx ON events (destination_id, id);
CREATE INDEX events_orchestrator_id_id_idx ON events (orchestrator_id, id);
-- The fan-out queue: only events not fanned out yet. The claim repeats this predicate
-- literally so that the planner can prove the index applies.
CREATE INDEX events_fanout_idx ON events (id) WHERE NOT fanned_out;

CREATE TABLE webhook_endpoints (
    id TEXT NOT NULL PRIMARY KEY,
    owner_kind TEXT NOT NULL,
    client_id TEXT REFERENCES client_ids (id),
    orchestrator_id TEXT REFERENCES orchestrators (id),
    organization_id TEXT REFERENCES organizations (id),
    destination_id TEXT,
    url TEXT NOT NULL,
    -- A JSON array of patterns: exact types, family.* or *.
    event_types TEXT NOT NULL,
    description TEXT,
    enabled BOOLEAN NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_expires_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    -- A destination (of a destination's or a client's endpoint) of the endpoint's organization.
    CONSTRAINT webhook_endpoints_destination_fkey FOREIGN KEY (organization_id, destination_id)
        REFERENCES destinations (organization_id, id),
    -- Exactly the owner columns of its kind are set (a client's endpoint also names the
    -- client's organization and destination).
    CONSTRAINT webhook_endpoints_owner_check CHECK (
        (owner_kind = 'client' AND client_id IS NOT NULL AND orchestrator_id IS NULL
            AND organization_id IS NOT NULL)
        OR (owner_kind = 'orchestrator' AND orchestrator_id IS NOT NULL AND client_id IS NULL
            AND organization_id IS NULL AND destination_id IS NULL)
        OR (owner_kind = 'platform' AND organization_id IS NOT NULL AND destination_id IS NULL
            AND client_id IS NULL AND orchestrator_id IS NULL)
        OR (owner_kind = 'destination' AND organization_id IS NOT NULL
            AND destination_id IS NOT NULL AND client_id IS NULL AND orchestrator_id IS NULL)
    )
);

-- Owner lookups, newest first; the organization's also serves the fan-out's candidates.
CREATE INDEX webhook_endpoints_organization_id_id_idx ON webhook_endpoints (organization_id, id);
CREATE INDEX webhook_endpoints_destination_id_id_idx ON webhook_endpoints (destination_id, id);
CREATE INDEX webhook_endpoints_client_id_id_idx ON webhook_endpoints (client_id, id);
CREATE INDEX webhook_endpoints_orchestrator_id_id_idx ON webhook_endpoints (orchestrator_id, id);

CREATE TABLE webhook_deliveries (
    id TEXT NOT NULL PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id),
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    response_status INTEGER,
    response_body TEXT,
    duration_ms BIGINT,
    next_attempt_at TIMESTAMP,
    first_attempt_at TIMESTAMP NOT NULL,
    -- Set while a worker holds the attempt; the attempt is free again once it has passed.
    lease_until TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT webhook_deliveries_status_check
        CHECK (status IN ('pending', 'succeeded', 'failed', 'skipped'))
);

-- An endpoint's log, newest first (and the cascade from its endpoint).
CREATE INDEX webhook_deliveries_endpoint_id_id_idx ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_event_id_idx ON webhook_deliveries (event_id);
-- The delivery queue: only pending attempts, soonest first. The claim repeats this predicate
-- literally so that the planner can prove the index applies.
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (next_attempt_at, id)
    WHERE status = 'pending';

-- Workers LISTEN on mandate_work: every new event and every new attempt notifies them when
-- its transaction commits (notifications of one transaction are folded into one).
CREATE FUNCTION mandate_notify_work() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mandate_work', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_work AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION mandate_notify_work();
CREATE TRIGGER webhook_deliveries_notify_work AFTER INSERT ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION mandate_notify_work();
