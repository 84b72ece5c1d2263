-- The customer pool of each organization. Payment requests keep their customer_id as plain
-- text without a foreign key: a customer may be deleted while its requests stay as history.
CREATE TABLE customers (
    id TEXT NOT NULL PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    email TEXT,
    -- The email in lower case: what uniqueness is decided on.
    email_normalized TEXT,
    name TEXT,
    -- A JSON object of string pairs.
    metadata TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    -- One customer per email in an organization; both backends treat NULLs as distinct here,
    -- so any number of customers may have no email. Also serves the lookup by email.
    CONSTRAINT customers_organization_id_email_normalized_key
        UNIQUE (organization_id, email_normalized),
    CONSTRAINT customers_email_check CHECK ((email IS NULL) = (email_normalized IS NULL))
);

-- Serves the per-organization list, newest first.
CREATE INDEX customers_organization_id_id_idx ON customers (organization_id, id);
