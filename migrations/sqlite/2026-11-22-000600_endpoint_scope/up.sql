-- The scope of the credential that registered an endpoint, when it was narrowed (an access
-- token whose scope is less than its client ID holds): space-separated permission strings,
-- sorted. The endpoint receives only what this scope may read, intersected with its client
-- ID's permissions at the time. NULL: the owner's full permissions, whatever they are then.
ALTER TABLE webhook_endpoints ADD COLUMN scope TEXT;
