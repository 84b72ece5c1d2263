//! The outbox: a change and its events are stored in one transaction.
//!
//! **Invariant: one write port call = one transaction with its events.** Every port method
//! that stores events runs in [`db_write!`]: its body makes the change and stores the change's
//! [`Outbox`] in the same transaction ([`Outbox::store`], or [`Outbox::store_with`] to send
//! them together with the change's one statement), and once the transaction has committed the
//! webhook workers are woken. No other code inserts into `events`: no committed change without
//! its events, no event without its change.

use diesel::prelude::*;
use diesel::query_builder::InsertStatement;
use mandate_domain::events::Event;

use crate::dialect::Dialect;
use crate::errors::Error;
use crate::events::EventRow;
use crate::schema::events;
use crate::sql::Statement;

/// The events of one change, ready to be stored with it.
#[derive(Debug)]
pub(crate) struct Outbox {
    events: Vec<EventRow>,
}

/// The statement storing one event.
type InsertEvent<'a> =
    InsertStatement<events::table, <&'a EventRow as Insertable<events::table>>::Values>;

impl Outbox {
    /// The outbox of a change with these events.
    pub(crate) fn of(events: &[Event]) -> Result<Outbox, Error> {
        let events = events
            .iter()
            .map(EventRow::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Outbox { events })
    }

    /// The outbox of a direct event, which is stored with its one attempt: the fan-out has
    /// nothing to add.
    pub(crate) fn direct(event: &Event) -> Result<Outbox, Error> {
        let mut event = EventRow::try_from(event)?;
        event.fanned_out = true;
        Ok(Outbox {
            events: vec![event],
        })
    }

    /// Stores the events, one cached statement each, in the transaction running on `conn`.
    pub(crate) async fn store<C: Dialect>(&self, conn: &mut C) -> QueryResult<()> {
        for event in &self.events {
            conn.run(insert_event(event)).await?;
        }
        Ok(())
    }

    /// Runs `change`, the change's one statement, and stores the events; on PostgreSQL a
    /// single event travels with the change (pipelined).
    pub(crate) async fn store_with<C: Dialect>(
        &self,
        conn: &mut C,
        change: impl Statement,
    ) -> QueryResult<()> {
        match self.events.as_slice() {
            [event] => conn.pipeline(change, insert_event(event)).await,
            _ => {
                conn.run(change).await?;
                self.store(conn).await
            }
        }
    }
}

fn insert_event(event: &EventRow) -> InsertEvent<'_> {
    diesel::insert_into(events::table).values(event)
}

/// Runs one write port call: `body` in one transaction (as [`db_transaction!`]) with the
/// change's [`Outbox`] named `$outbox` in it, and wakes the webhook workers once the
/// transaction has committed. See the module's invariant.
macro_rules! db_write {
    ($store:expr, $outbox:ident, |$conn:ident| $body:block) => {{
        let $outbox: $crate::outbox::Outbox = $outbox;
        $crate::pool::db_transaction!($store, |$conn| $body).inspect(|_| $store.work.committed())
    }};
}
pub(crate) use db_write;
