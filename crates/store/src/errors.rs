//! Why a store operation failed, and how that becomes a [`StoreError`].

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use mandate_domain::ports::StoreError;

use crate::pool::PoolError;

/// Why a store operation failed, before it becomes a [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Query(DieselError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("no database connection became available within {0:?}")]
    AcquireTimeout(Duration),
    #[error("the database did not answer within {0:?}")]
    PingTimeout(Duration),
    #[error("{0}")]
    Data(String),
    #[error("the database task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl From<DieselError> for Error {
    /// A row whose stored values break a domain rule is unreadable data, not a failed query.
    fn from(error: DieselError) -> Error {
        match error {
            DieselError::DeserializationError(cause) => {
                Error::Data(format!("a stored row cannot be read: {cause}"))
            }
            error => Error::Query(error),
        }
    }
}

/// What a conversion that cannot fail fails with.
impl From<std::convert::Infallible> for Error {
    fn from(never: std::convert::Infallible) -> Error {
        match never {}
    }
}

impl From<Error> for StoreError {
    fn from(error: Error) -> StoreError {
        match error {
            Error::Query(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                StoreError::Duplicate
            }
            Error::Query(ref query) if is_connection_failure(query) => {
                StoreError::Unavailable(Box::new(error))
            }
            Error::Pool(PoolError::NoRuntimeSpecified) => StoreError::Other(Box::new(error)),
            Error::Pool(_) | Error::AcquireTimeout(_) | Error::PingTimeout(_) => {
                StoreError::Unavailable(Box::new(error))
            }
            Error::Query(_) | Error::Data(_) | Error::Task(_) => StoreError::Other(Box::new(error)),
        }
    }
}

/// Errors after which a retry on another connection, or later, may well succeed.
pub(crate) fn is_connection_failure(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        // SQLITE_BUSY: another process held the write lock past busy_timeout. PostgreSQL ending
        // the session (SQLSTATE class 57: shut down, crashed, its postmaster gone), which
        // diesel-async reports by message only.
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            info.message().contains("database is locked")
                || info.message().starts_with("terminating connection")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> StoreError {
        Error::Query(DieselError::DatabaseError(
            kind,
            Box::new(message.to_owned()),
        ))
        .into()
    }

    #[test]
    fn sessions_the_database_ended_are_unavailable_not_failures() {
        for message in [
            "terminating connection due to unexpected postmaster exit",
            "terminating connection due to administrator command",
            "terminating connection because of crash of another server process",
            "database is locked",
        ] {
            assert!(
                matches!(
                    database_error(DatabaseErrorKind::Unknown, message),
                    StoreError::Unavailable(_)
                ),
                "{message}"
            );
        }
        assert!(matches!(
            database_error(DatabaseErrorKind::Unknown, "division by zero"),
            StoreError::Other(_)
        ));
        assert!(matches!(
            database_error(DatabaseErrorKind::UniqueViolation, "duplicate key"),
            StoreError::Duplicate
        ));
    }
}
