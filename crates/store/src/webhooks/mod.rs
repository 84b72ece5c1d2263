//! Webhook endpoints, deliveries and the fan-out of events, claimed by any number of workers:
//! rows are leased (`lease_until`), and on PostgreSQL selected `FOR UPDATE SKIP LOCKED` in the
//! claiming transaction so that concurrent workers take disjoint sets.

pub(crate) mod rows;

use std::borrow::Cow;
use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::{delete, insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::events::Event;
use mandate_domain::ids::{DeliveryId, EndpointId, EventId, OrganizationId};
use mandate_domain::ports::{
    ClaimedDelivery, Fanout, Page, PageRequest, RecordedAttempt, StoreError, WebhookStore,
};
use mandate_domain::values::{Permission, PermissionSet};
use mandate_domain::webhooks::{Delivery, EndpointOwner, WebhookEndpoint};

use crate::DbStore;
use crate::dialect::{Dialect, PENDING_DELIVERY, due_deliveries, due_endpoints};
use crate::errors::Error;
use crate::events::EventRow;
use crate::organizations::{DESTINATION, ORCHESTRATOR, PLATFORM};
use crate::outbox::{Outbox, db_write};
use crate::page::{into_page, page_cursor, page_limit, sql_limit};
use crate::pool::{db_run, db_transaction};
use crate::rows::{parsed, to_naive};
use crate::schema::{client_ids, events, webhook_deliveries, webhook_endpoints};
use crate::sql::StableUpdate;
use crate::webhooks::rows::{CLIENT, DeliveryOutcome, DeliveryRow, EndpointChanges, EndpointRow};

/// The family of customer events.
const CUSTOMER_FAMILY: &str = "customer";

/// The SQL form of an [`EndpointOwner`].
enum OwnerFilter {
    Client(String),
    Orchestrator(String),
    Platform(String),
    Destination {
        organization_id: String,
        destination_id: String,
    },
}

/// The end of a lease taken at `now`; a lease too long to represent lasts as long as can be.
fn lease_end(now: DateTime<Utc>, lease: chrono::Duration) -> chrono::NaiveDateTime {
    to_naive(
        now.checked_add_signed(lease)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

#[async_trait]
impl WebhookStore for DbStore {
    async fn insert_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        let row = EndpointRow::try_from(self.sealed(endpoint)?.as_ref())?;
        db_run!(self, |conn| {
            insert_into(webhook_endpoints::table)
                .values(&row)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    async fn endpoint(&self, id: &EndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        let id = id.to_string();
        let found = db_run!(self, |conn| {
            let row = webhook_endpoints::table
                .find(&id)
                .select(EndpointRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(WebhookEndpoint::try_from).transpose()
        })?;
        self.opened(found)
    }

    async fn endpoints_of(
        &self,
        owner: &EndpointOwner,
        within: Option<&PermissionSet>,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError> {
        // `endpoint_scope_fits` in SQL: a recorded scope holding none of the permissions
        // outside `within` (no permission's name is part of another's).
        let outside: Option<Vec<String>> = within.map(|within| {
            Permission::ALL
                .into_iter()
                .filter(|permission| !within.contains(*permission))
                .map(|permission| format!("%{}%", permission.as_str()))
                .collect()
        });
        let owner = match owner {
            EndpointOwner::Client { client_id } => OwnerFilter::Client(client_id.to_string()),
            EndpointOwner::Orchestrator { orchestrator_id } => {
                OwnerFilter::Orchestrator(orchestrator_id.to_string())
            }
            EndpointOwner::Platform { organization_id } => {
                OwnerFilter::Platform(organization_id.to_string())
            }
            EndpointOwner::Destination {
                organization_id,
                destination_id,
            } => OwnerFilter::Destination {
                organization_id: organization_id.to_string(),
                destination_id: destination_id.to_string(),
            },
        };
        let limit = page_limit(page);
        let cursor = page_cursor(page, EndpointId::parse);
        let found = db_run!(self, |conn| {
            let mut query = webhook_endpoints::table
                .select(EndpointRow::as_select())
                .order(webhook_endpoints::id.desc())
                .limit(sql_limit(limit + 1))
                .into_boxed();
            query = match &owner {
                OwnerFilter::Client(id) => query
                    .filter(webhook_endpoints::owner_kind.eq(CLIENT))
                    .filter(webhook_endpoints::client_id.eq(id.as_str())),
                OwnerFilter::Orchestrator(id) => query
                    .filter(webhook_endpoints::owner_kind.eq(ORCHESTRATOR))
                    .filter(webhook_endpoints::orchestrator_id.eq(id.as_str())),
                OwnerFilter::Platform(id) => query
                    .filter(webhook_endpoints::owner_kind.eq(PLATFORM))
                    .filter(webhook_endpoints::organization_id.eq(id.as_str())),
                OwnerFilter::Destination {
                    organization_id,
                    destination_id,
                } => query
                    .filter(webhook_endpoints::owner_kind.eq(DESTINATION))
                    .filter(webhook_endpoints::organization_id.eq(organization_id.as_str()))
                    .filter(webhook_endpoints::destination_id.eq(destination_id.as_str())),
            };
            if let Some(outside) = &outside {
                query = query.filter(webhook_endpoints::scope.is_not_null());
                for pattern in outside {
                    query = query.filter(webhook_endpoints::scope.not_like(pattern.as_str()));
                }
            }
            if let Some(cursor) = &cursor {
                query = query.filter(webhook_endpoints::id.lt(cursor.as_str()));
            }
            into_page(query.load(conn).await?, limit)
        })?;
        self.opened(found)
    }

    async fn endpoints_of_organization(
        &self,
        organization_id: &OrganizationId,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError> {
        let organization_id = organization_id.to_string();
        let limit = page_limit(page);
        let cursor = page_cursor(page, EndpointId::parse);
        let found = db_run!(self, |conn| {
            let mut query = webhook_endpoints::table
                .filter(webhook_endpoints::organization_id.eq(organization_id.as_str()))
                .filter(webhook_endpoints::owner_kind.eq_any([PLATFORM, DESTINATION]))
                .select(EndpointRow::as_select())
                .order(webhook_endpoints::id.desc())
                .limit(sql_limit(limit + 1))
                .into_boxed();
            if let Some(cursor) = &cursor {
                query = query.filter(webhook_endpoints::id.lt(cursor.as_str()));
            }
            into_page(query.load(conn).await?, limit)
        })?;
        self.opened(found)
    }

    async fn update_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        let id = endpoint.id.to_string();
        let changes = EndpointChanges::try_from(self.sealed(endpoint)?.as_ref())?;
        db_run!(self, |conn| {
            // An endpoint deleted meanwhile stays deleted: there is nothing left to change.
            update(webhook_endpoints::table.find(&id))
                .set(&changes)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool, StoreError> {
        let id = id.to_string();
        db_run!(self, |conn| {
            // Its attempts go with it (ON DELETE CASCADE).
            let deleted = delete(webhook_endpoints::table.find(&id))
                .execute(conn)
                .await?;
            Ok(deleted > 0)
        })
    }

    async fn candidate_endpoints(&self, event: &Event) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let audience = &event.audience;
        let organization_id = audience.organization_id.as_ref().map(ToString::to_string);
        let destination_id = audience.destination_id.as_ref().map(ToString::to_string);
        let orchestrator_id = audience.orchestrator_id.as_ref().map(ToString::to_string);
        // Customer events are seen through any client ID of the organization (with
        // `customers:read`), the others through a client ID of their destination.
        let organization_wide =
            destination_id.is_none() || event.event_type.family() == CUSTOMER_FAMILY;
        let created_at = to_naive(event.created_at);
        let found = db_run!(self, |conn| {
            // Orchestrators holding a client ID there, active or not: the caller decides.
            let mut linked = client_ids::table
                .select(client_ids::orchestrator_id)
                .into_boxed();
            linked = if organization_wide {
                linked.filter(
                    client_ids::organization_id
                        .nullable()
                        .eq(organization_id.clone()),
                )
            } else {
                linked.filter(
                    client_ids::destination_id
                        .nullable()
                        .eq(destination_id.clone()),
                )
            };
            // An absent audience id binds NULL, which equals nothing.
            let rows = webhook_endpoints::table
                .filter(webhook_endpoints::enabled.eq(true))
                .filter(webhook_endpoints::created_at.le(created_at))
                .filter(
                    // Platform, destination and client endpoints of the organization.
                    webhook_endpoints::organization_id
                        .eq(organization_id.clone())
                        .or(webhook_endpoints::owner_kind.eq(ORCHESTRATOR).and(
                            webhook_endpoints::orchestrator_id
                                .eq(orchestrator_id.clone())
                                .or(webhook_endpoints::orchestrator_id
                                    .assume_not_null()
                                    .eq_any(linked)),
                        )),
                )
                .order(webhook_endpoints::id.asc())
                .select(EndpointRow::as_select())
                .load(conn)
                .await?;
            rows.into_iter()
                .map(WebhookEndpoint::try_from)
                .collect::<Result<Vec<_>, Error>>()
        })?;
        self.opened(found)
    }

    async fn claim_events_for_fanout(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<Event>, StoreError> {
        let until = lease_end(now, lease);
        let now = to_naive(now);
        let limit = i64::from(limit);
        db_transaction!(self, |conn| {
            let ids = conn.lock_fanout_queue(now, limit).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let rows = StableUpdate(
                update(events::table.filter(events::id.eq_any(&ids)))
                    .set(events::fanout_lease_until.eq(until))
                    .returning(EventRow::as_returning()),
            )
            .get_results(conn)
            .await?;
            let mut claimed = rows
                .into_iter()
                .map(Event::try_from)
                .collect::<Result<Vec<_>, Error>>()?;
            // Oldest first, as claimed.
            claimed.sort_by(|left, right| left.id.cmp(&right.id));
            Ok(claimed)
        })
    }

    async fn record_fanout(
        &self,
        fanouts: &[Fanout],
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<EventId>, StoreError> {
        if fanouts.is_empty() {
            return Ok(Vec::new());
        }
        let until = lease_end(now, lease);
        let event_ids: Vec<String> = fanouts
            .iter()
            .map(|fanout| fanout.event_id.to_string())
            .collect();
        let mut attempts: HashMap<String, Vec<DeliveryRow>> = HashMap::new();
        for fanout in fanouts {
            let rows = fanout
                .deliveries
                .iter()
                .map(|delivery| DeliveryRow::leased(delivery, until))
                .collect::<Result<Vec<_>, Error>>()?;
            attempts.insert(fanout.event_id.to_string(), rows);
        }
        let marked = db_transaction!(self, |conn| {
            let marked = conn.mark_fanned_out(&event_ids).await?;
            let rows: Vec<DeliveryRow> = marked
                .iter()
                .filter_map(|id| attempts.remove(id))
                .flatten()
                .collect();
            conn.insert_deliveries(&rows).await?;
            Ok(marked)
        })?;
        // No wake-up: the attempts are leased to the caller, who sends them.
        marked
            .iter()
            .map(|id| Ok(parsed("event id", id, EventId::parse)?))
            .collect()
    }

    async fn claim_due_deliveries_per_endpoint(
        &self,
        limit: u32,
        per_endpoint: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let until = lease_end(now, lease);
        let now = to_naive(now);
        let limit = i64::from(limit);
        let per_endpoint = i64::from(per_endpoint);
        let found = db_transaction!(self, |conn| {
            let due: Vec<String> = due_endpoints!(now, limit).load(conn).await?;
            if due.is_empty() {
                return Ok(Vec::new());
            }
            let locked = conn.lock_endpoints(&due).await?;
            let in_flight: HashMap<String, i64> = webhook_deliveries::table
                .filter(PENDING_DELIVERY)
                .filter(webhook_deliveries::endpoint_id.eq_any(&locked))
                .filter(webhook_deliveries::lease_until.gt(now))
                .group_by(webhook_deliveries::endpoint_id)
                .select((webhook_deliveries::endpoint_id, diesel::dsl::count_star()))
                .load::<(String, i64)>(conn)
                .await?
                .into_iter()
                .collect();
            let mut ids = Vec::new();
            // Soonest due endpoint first, each up to its room.
            for endpoint in due.iter().filter(|id| locked.contains(id)) {
                let room = per_endpoint - in_flight.get(endpoint).copied().unwrap_or(0);
                let wanted = room.min(limit - i64::try_from(ids.len()).unwrap_or(limit));
                if wanted > 0 {
                    ids.extend(conn.lock_endpoint_queue(endpoint, now, wanted).await?);
                }
            }
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            StableUpdate(
                update(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(&ids)))
                    .set(webhook_deliveries::lease_until.eq(until)),
            )
            .execute(conn)
            .await?;
            let rows: Vec<(DeliveryRow, EventRow, EndpointRow)> = webhook_deliveries::table
                .inner_join(events::table)
                .inner_join(webhook_endpoints::table)
                .filter(webhook_deliveries::id.eq_any(&ids))
                .order((
                    webhook_deliveries::next_attempt_at.asc(),
                    webhook_deliveries::id.asc(),
                ))
                .select((
                    DeliveryRow::as_select(),
                    EventRow::as_select(),
                    EndpointRow::as_select(),
                ))
                .load(conn)
                .await?;
            rows.into_iter()
                .map(|(delivery, event, endpoint)| {
                    Ok(ClaimedDelivery {
                        delivery: Delivery::try_from(delivery)?,
                        event: Event::try_from(event)?,
                        endpoint: WebhookEndpoint::try_from(endpoint)?,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()
        })?;
        self.opened(found)
    }

    async fn record_attempts(&self, recorded: &[RecordedAttempt]) -> Result<(), StoreError> {
        if recorded.is_empty() {
            return Ok(());
        }
        let outcomes = recorded
            .iter()
            .map(|recorded| {
                Ok((
                    recorded.attempt.id.to_string(),
                    DeliveryOutcome::try_from(&recorded.attempt)?,
                    recorded
                        .next
                        .as_ref()
                        .map(DeliveryRow::try_from)
                        .transpose()?,
                ))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        db_transaction!(self, |conn| {
            conn.commit_without_flush().await?;
            let mut successors = Vec::new();
            for (id, outcome, next) in &outcomes {
                let updated = StableUpdate(update(webhook_deliveries::table.find(id)).set(outcome))
                    .execute(conn)
                    .await?;
                // An attempt gone with its endpoint (deleted meanwhile) has no successor.
                if let Some(next) = next.as_ref().filter(|_| updated > 0) {
                    successors.push(next.clone());
                }
            }
            conn.insert_deliveries(&successors).await?;
            Ok(())
        })
        .inspect(|()| self.work.committed())
    }

    async fn insert_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let row = DeliveryRow::try_from(delivery)?;
        db_run!(self, |conn| {
            insert_into(webhook_deliveries::table)
                .values(&row)
                .execute(conn)
                .await?;
            Ok(())
        })
        .inspect(|()| self.work.committed())
    }

    async fn insert_direct_event(
        &self,
        event: &Event,
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        let outbox = Outbox::direct(event)?;
        let delivery = DeliveryRow::try_from(delivery)?;
        db_write!(self, outbox, |conn| {
            // The attempt references its event: the event goes first.
            outbox.store(conn).await?;
            insert_into(webhook_deliveries::table)
                .values(&delivery)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let id = id.to_string();
        db_run!(self, |conn| {
            let row = webhook_deliveries::table
                .find(&id)
                .select(DeliveryRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(Delivery::try_from).transpose()
        })
    }

    async fn deliveries_of(
        &self,
        endpoint_id: &EndpointId,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError> {
        let endpoint_id = endpoint_id.to_string();
        let limit = page_limit(page);
        let cursor = page_cursor(page, DeliveryId::parse);
        db_run!(self, |conn| {
            let mut query = webhook_deliveries::table
                .filter(webhook_deliveries::endpoint_id.eq(endpoint_id.as_str()))
                .select(DeliveryRow::as_select())
                .order(webhook_deliveries::id.desc())
                .limit(sql_limit(limit + 1))
                .into_boxed();
            if let Some(cursor) = &cursor {
                query = query.filter(webhook_deliveries::id.lt(cursor.as_str()));
            }
            into_page(query.load(conn).await?, limit)
        })
    }

    async fn wait_for_work(&self, timeout: std::time::Duration) {
        self.work.wait(timeout).await;
    }
}

/// What the store reads endpoints into: their secrets are opened before they leave it.
trait WithEndpoints {
    fn endpoints(&mut self) -> Vec<&mut WebhookEndpoint>;
}

impl WithEndpoints for Option<WebhookEndpoint> {
    fn endpoints(&mut self) -> Vec<&mut WebhookEndpoint> {
        self.iter_mut().collect()
    }
}

impl WithEndpoints for Vec<WebhookEndpoint> {
    fn endpoints(&mut self) -> Vec<&mut WebhookEndpoint> {
        self.iter_mut().collect()
    }
}

impl WithEndpoints for Page<WebhookEndpoint> {
    fn endpoints(&mut self) -> Vec<&mut WebhookEndpoint> {
        self.data.iter_mut().collect()
    }
}

impl WithEndpoints for Vec<ClaimedDelivery> {
    fn endpoints(&mut self) -> Vec<&mut WebhookEndpoint> {
        self.iter_mut()
            .map(|claimed| &mut claimed.endpoint)
            .collect()
    }
}

impl DbStore {
    /// `endpoint` as it is written: with its secrets sealed when this store seals them.
    fn sealed<'a>(
        &self,
        endpoint: &'a WebhookEndpoint,
    ) -> Result<Cow<'a, WebhookEndpoint>, StoreError> {
        match &self.sealer {
            Some(sealer) => sealer.sealed(endpoint).map(Cow::Owned),
            None => Ok(Cow::Borrowed(endpoint)),
        }
    }

    /// What was read, with the endpoints' secrets opened.
    fn opened<T: WithEndpoints>(&self, mut found: T) -> Result<T, StoreError> {
        if let Some(sealer) = &self.sealer {
            for endpoint in found.endpoints() {
                sealer.open_endpoint(endpoint)?;
            }
        }
        Ok(found)
    }
}
