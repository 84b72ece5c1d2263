//! The connection of a keyed call, which every operation of the call's store runs on.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::Object;
use tokio::sync::{OwnedMappedMutexGuard, OwnedMutexGuard};

use crate::errors::Error;
use crate::pool::SqliteConn;

/// The connection of a keyed call, held in the call's transaction from its beginning to its
/// end (then taken out and returned to the pool): every operation of the call's store runs on
/// it, so that the call's writes and its answer commit together.
pub(crate) type KeyedConnection<C> = Arc<tokio::sync::Mutex<Option<Object<C>>>>;

/// The keyed call a store runs in, if any.
#[derive(Clone)]
pub(crate) enum Keyed {
    Postgres(KeyedConnection<AsyncPgConnection>),
    Sqlite(KeyedConnection<SqliteConn>),
}

/// The connection one operation runs on (`O`, a pooled connection object): a pooled one, or
/// its keyed call's.
pub(crate) enum Held<O: 'static> {
    Pooled(O),
    Keyed(OwnedMappedMutexGuard<Option<O>, O>),
}

impl<O: 'static> Held<O> {
    /// Whether the operation runs inside a keyed call's transaction.
    pub(crate) fn is_keyed(&self) -> bool {
        matches!(self, Held::Keyed(_))
    }

    pub(crate) async fn keyed(
        connection: &Arc<tokio::sync::Mutex<Option<O>>>,
    ) -> Result<Held<O>, Error> {
        OwnedMutexGuard::try_map(connection.clone().lock_owned().await, Option::as_mut)
            .map(Held::Keyed)
            .map_err(|_| Error::Data("the keyed call has ended".into()))
    }
}

impl<O: DerefMut + 'static> Deref for Held<O> {
    type Target = O::Target;

    fn deref(&self) -> &O::Target {
        match self {
            Held::Pooled(object) => object,
            Held::Keyed(guard) => guard,
        }
    }
}

impl<O: DerefMut + 'static> DerefMut for Held<O> {
    fn deref_mut(&mut self) -> &mut O::Target {
        match self {
            Held::Pooled(object) => object,
            Held::Keyed(guard) => guard,
        }
    }
}
