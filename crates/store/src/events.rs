//! Events: their row and the event port (the feed's SQL is in `feed`; events are written
//! only through the `outbox`).

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use mandate_domain::events::{Audience, Event, EventType};
use mandate_domain::ids::{
    ClientId, DestinationId, EndpointId, EventId, OrchestratorId, OrganizationId,
};
use mandate_domain::payments::Direction;
use mandate_domain::ports::{EventFilter, EventStore, Page, PageRequest, StoreError};
use mandate_domain::webhooks::EventScope;

use crate::DbStore;
use crate::errors::Error;
use crate::feed::{FeedFilter, FeedPredicate};
use crate::page::{db_page, empty_page};
use crate::pool::db_first;
use crate::rows::{known, optional, parsed, to_naive, to_utc};
use crate::schema::events;

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = events, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct EventRow {
    pub(crate) id: String,
    pub(crate) organization_id: Option<String>,
    pub(crate) destination_id: Option<String>,
    pub(crate) orchestrator_id: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) direction: Option<String>,
    pub(crate) event_type: String,
    pub(crate) data: String,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) endpoint_id: Option<String>,
    pub(crate) family: String,
    /// Whether the event's first attempts are stored; a direct event has its one already.
    pub(crate) fanned_out: bool,
}

impl TryFrom<&Event> for EventRow {
    type Error = Error;
    fn try_from(event: &Event) -> Result<Self, Error> {
        let audience = &event.audience;
        let data = serde_json::to_string(&event.object).map_err(|error| {
            Error::Data(format!("event {} cannot be serialized: {error}", event.id))
        })?;
        Ok(Self {
            id: event.id.to_string(),
            organization_id: audience.organization_id.as_ref().map(ToString::to_string),
            destination_id: audience.destination_id.as_ref().map(ToString::to_string),
            orchestrator_id: audience.orchestrator_id.as_ref().map(ToString::to_string),
            client_id: audience.client_id.as_ref().map(ToString::to_string),
            direction: audience
                .direction
                .map(|direction| direction.as_str().to_owned()),
            event_type: event.event_type.as_str().to_owned(),
            data,
            created_at: to_naive(event.created_at),
            endpoint_id: audience.endpoint_id.as_ref().map(ToString::to_string),
            family: event.event_type.family().to_owned(),
            fanned_out: false,
        })
    }
}

impl TryFrom<EventRow> for Event {
    type Error = Error;
    fn try_from(row: EventRow) -> Result<Self, Error> {
        let object = serde_json::from_str(&row.data).map_err(|error| {
            Error::Data(format!(
                "stored data of event {} is invalid: {error}",
                row.id
            ))
        })?;
        let direction = row
            .direction
            .as_deref()
            .map(|direction| known("direction", direction, Direction::parse))
            .transpose()?;
        Ok(Event {
            id: parsed("event id", &row.id, EventId::parse)?,
            event_type: known("event type", &row.event_type, EventType::parse)?,
            audience: Audience {
                organization_id: optional(
                    "organization id",
                    row.organization_id.as_deref(),
                    OrganizationId::parse,
                )?,
                destination_id: optional(
                    "destination id",
                    row.destination_id.as_deref(),
                    DestinationId::parse,
                )?,
                orchestrator_id: optional(
                    "orchestrator id",
                    row.orchestrator_id.as_deref(),
                    OrchestratorId::parse,
                )?,
                client_id: optional("client id", row.client_id.as_deref(), ClientId::parse)?,
                direction,
                endpoint_id: optional(
                    "endpoint id",
                    row.endpoint_id.as_deref(),
                    EndpointId::parse,
                )?,
            },
            object,
            created_at: to_utc(row.created_at),
        })
    }
}

#[async_trait]
impl EventStore for DbStore {
    async fn events(&self, page: &PageRequest) -> Result<Page<Event>, StoreError> {
        db_page!(self, page, events, EventRow, EventId, |query| {})
    }

    async fn list_events(
        &self,
        scope: &EventScope,
        types: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<Event>, StoreError> {
        let Some(filter) = FeedFilter::new(scope) else {
            return Ok(empty_page());
        };
        let types: Option<Vec<&'static str>> = types
            .types
            .as_ref()
            .map(|types| types.iter().map(|event_type| event_type.as_str()).collect());
        db_page!(self, page, events, EventRow, EventId, |conn, query| {
            // `EventScope::contains`, in SQL.
            query = query.filter(conn.feed_predicate(&filter));
            if let Some(types) = &types {
                query = query.filter(events::event_type.eq_any(types.clone()));
            }
        })
    }

    async fn event(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        let id = id.to_string();
        db_first!(self, EventRow, events::table.find(&id))
    }
}
