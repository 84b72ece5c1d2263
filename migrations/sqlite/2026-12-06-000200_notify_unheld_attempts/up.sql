-- Nothing to change on SQLite: its single process wakes its own worker after a commit, and the
-- fan-out's attempts, leased to that worker, wake nobody (see the PostgreSQL migration).
SELECT 1;
