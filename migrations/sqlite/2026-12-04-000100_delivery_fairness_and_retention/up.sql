-- The per-endpoint claim: an endpoint's pending attempts, soonest first, and how many of them
-- are leased (in flight).
CREATE INDEX webhook_deliveries_pending_endpoint_idx
    ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
-- The retention purge: finished attempts, oldest first. The purge repeats this predicate
-- literally so that the planner can prove the index applies.
CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (created_at)
    WHERE status <> 'pending';
