//! The event feed's scope in SQL: each [`EventClause`] translated as `EventClause::contains`
//! reads, the clauses OR-ed. Clauses of one shape are merged into `IN` lists first, so that an
//! orchestrator with many client IDs still yields a short query; the OR-ed parts then form a
//! balanced tree, whose depth stays far below SQLite's expression depth limit.

use std::collections::BTreeMap;

use diesel::dsl::not;
use diesel::expression::BoxableExpression;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use mandate_domain::payments::Direction;
use mandate_domain::webhooks::{EventClause, EventScope};

use crate::pool::SqliteConn;
use crate::schema::events;

/// The family of payment-request events.
const PAYMENT_REQUEST: &str = "payment_request";

/// An [`EventScope`] as owned values, clauses of one shape merged.
#[derive(Debug, Clone, Default)]
pub(crate) struct FeedFilter {
    /// Events of these families in one of these organizations.
    organizations: BTreeMap<Vec<&'static str>, Vec<String>>,
    /// Events of these families about one of these destinations.
    destinations: BTreeMap<Vec<&'static str>, Vec<String>>,
    /// Events of these families about one of these orchestrators.
    orchestrators: BTreeMap<Vec<&'static str>, Vec<String>>,
    /// Payment-request events of a destination created through one of these client IDs.
    own_requests: BTreeMap<String, Vec<String>>,
    /// Destinations whose incoming payment-request events are readable.
    incoming: Vec<String>,
    /// Destinations whose outgoing payment-request events are readable.
    outgoing: Vec<String>,
}

impl FeedFilter {
    /// `None` when the scope has no clause: it matches nothing, and needs no query.
    pub(crate) fn new(scope: &EventScope) -> Option<FeedFilter> {
        if scope.clauses.is_empty() {
            return None;
        }
        let mut filter = FeedFilter::default();
        for clause in &scope.clauses {
            match clause {
                EventClause::Organization {
                    organization_id,
                    families,
                } => filter
                    .organizations
                    .entry(families.to_vec())
                    .or_default()
                    .push(organization_id.to_string()),
                EventClause::Destination {
                    destination_id,
                    families,
                } => filter
                    .destinations
                    .entry(families.to_vec())
                    .or_default()
                    .push(destination_id.to_string()),
                EventClause::Orchestrator {
                    orchestrator_id,
                    families,
                } => filter
                    .orchestrators
                    .entry(families.to_vec())
                    .or_default()
                    .push(orchestrator_id.to_string()),
                EventClause::ClientRequests {
                    destination_id,
                    client_id,
                    incoming,
                    outgoing,
                } => {
                    filter
                        .own_requests
                        .entry(destination_id.to_string())
                        .or_default()
                        .push(client_id.to_string());
                    if *incoming {
                        filter.incoming.push(destination_id.to_string());
                    }
                    if *outgoing {
                        filter.outgoing.push(destination_id.to_string());
                    }
                }
            }
        }
        for list in [&mut filter.incoming, &mut filter.outgoing] {
            list.sort();
            list.dedup();
        }
        Some(filter)
    }
}

/// A boolean condition on `events` for the backend `DB`.
pub(crate) type Predicate<DB> = Box<dyn BoxableExpression<events::table, DB, SqlType = Bool>>;

/// The feed's condition, for the backend of a connection type.
pub(crate) trait FeedPredicate {
    /// The backend.
    type Db: diesel::backend::Backend;

    /// `filter` as one condition on `events`.
    fn feed_predicate(&self, filter: &FeedFilter) -> Predicate<Self::Db>;
}

/// One body for both backends: the expression types differ by backend only.
macro_rules! feed_predicate {
    ($connection:ty, $backend:ty) => {
        impl FeedPredicate for $connection {
            type Db = $backend;

            fn feed_predicate(&self, filter: &FeedFilter) -> Predicate<$backend> {
                // The audience columns are nullable; a NULL never equals an id, so treating
                // them as not null changes no outcome (no part is ever negated).
                let mut parts: Vec<Predicate<$backend>> = Vec::new();
                for (families, ids) in &filter.organizations {
                    parts.push(Box::new(
                        events::family.eq_any(families.clone()).and(
                            events::organization_id
                                .assume_not_null()
                                .eq_any(ids.clone()),
                        ),
                    ));
                }
                for (families, ids) in &filter.destinations {
                    parts.push(Box::new(
                        events::family
                            .eq_any(families.clone())
                            .and(events::destination_id.assume_not_null().eq_any(ids.clone())),
                    ));
                }
                for (families, ids) in &filter.orchestrators {
                    parts.push(Box::new(
                        events::family.eq_any(families.clone()).and(
                            events::orchestrator_id
                                .assume_not_null()
                                .eq_any(ids.clone()),
                        ),
                    ));
                }
                let mut requests: Vec<Predicate<$backend>> = Vec::new();
                for (destination_id, client_ids) in &filter.own_requests {
                    requests.push(Box::new(
                        events::destination_id
                            .assume_not_null()
                            .eq(destination_id.clone())
                            .and(
                                events::client_id
                                    .assume_not_null()
                                    .eq_any(client_ids.clone()),
                            ),
                    ));
                }
                for (direction, destinations) in [
                    (Direction::Incoming, &filter.incoming),
                    (Direction::Outgoing, &filter.outgoing),
                ] {
                    if !destinations.is_empty() {
                        requests.push(Box::new(
                            events::direction
                                .assume_not_null()
                                .eq(direction.as_str())
                                .and(
                                    events::destination_id
                                        .assume_not_null()
                                        .eq_any(destinations.clone()),
                                ),
                        ));
                    }
                }
                if !requests.is_empty() {
                    parts.push(Box::new(events::family.eq(PAYMENT_REQUEST).and(any_of::<
                        $backend,
                    >(
                        requests
                    ))));
                }
                any_of::<$backend>(parts)
            }
        }

        impl AnyOf for $backend {
            fn any_of(mut parts: Vec<Predicate<$backend>>) -> Predicate<$backend> {
                while parts.len() > 1 {
                    let mut pairs = parts.into_iter();
                    let mut joined: Vec<Predicate<$backend>> = Vec::new();
                    while let Some(left) = pairs.next() {
                        joined.push(match pairs.next() {
                            Some(right) => Box::new(left.or(right)),
                            None => left,
                        });
                    }
                    parts = joined;
                }
                parts
                    .pop()
                    .unwrap_or_else(|| Box::new(not(true.into_sql::<Bool>())))
            }
        }
    };
}

/// OR-ing conditions as a balanced tree (none: false).
pub(crate) trait AnyOf: diesel::backend::Backend + Sized {
    fn any_of(parts: Vec<Predicate<Self>>) -> Predicate<Self>;
}

fn any_of<DB: AnyOf>(parts: Vec<Predicate<DB>>) -> Predicate<DB> {
    DB::any_of(parts)
}

feed_predicate!(diesel_async::AsyncPgConnection, diesel::pg::Pg);
feed_predicate!(SqliteConn, diesel::sqlite::Sqlite);
