-- The owner's console sessions: the token and the key that signed in, each only as its keyed
-- hash; every page reads the key again, so revoking it ends the session.
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);
