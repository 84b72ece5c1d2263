//! The rows of webhook endpoints and their delivery attempts.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mandate_domain::ids::{
    ClientId, DeliveryId, DestinationId, EndpointId, EventId, OrchestratorId, OrganizationId,
};
use mandate_domain::webhooks::{
    Delivery, DeliveryStatus, EndpointOwner, EventTypeFilter, WebhookEndpoint,
};

use crate::clients::{permission_set, permissions_text};
use crate::errors::Error;
use crate::organizations::{DESTINATION, ORCHESTRATOR, PLATFORM};
use crate::rows::{known, optional, parsed, to_i32, to_i64, to_naive, to_u32, to_u64, to_utc};
use crate::schema::{webhook_deliveries, webhook_endpoints};

/// The `webhook_endpoints.owner_kind` of each owner.
pub(crate) const CLIENT: &str = "client";

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_endpoints, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct EndpointRow {
    pub(crate) id: String,
    pub(crate) owner_kind: String,
    pub(crate) client_id: Option<String>,
    pub(crate) orchestrator_id: Option<String>,
    pub(crate) organization_id: Option<String>,
    pub(crate) destination_id: Option<String>,
    pub(crate) url: String,
    pub(crate) event_types: String,
    pub(crate) description: Option<String>,
    pub(crate) enabled: bool,
    pub(crate) secret: String,
    pub(crate) previous_secret: Option<String>,
    pub(crate) previous_secret_expires_at: Option<NaiveDateTime>,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) updated_at: NaiveDateTime,
    pub(crate) scope: Option<String>,
}

impl TryFrom<&WebhookEndpoint> for EndpointRow {
    type Error = Error;
    fn try_from(endpoint: &WebhookEndpoint) -> Result<Self, Error> {
        let organization_id = endpoint.organization_id.as_ref().map(ToString::to_string);
        let destination_id = endpoint.destination_id.as_ref().map(ToString::to_string);
        // The owner decides which columns are set; a mismatch would be refused by the table's
        // check constraint, so it is refused here with a clearer message.
        let consistent = match &endpoint.owner {
            EndpointOwner::Client { .. } => endpoint.organization_id.is_some(),
            EndpointOwner::Orchestrator { .. } => {
                endpoint.organization_id.is_none() && endpoint.destination_id.is_none()
            }
            EndpointOwner::Platform { organization_id } => {
                endpoint.organization_id.as_ref() == Some(organization_id)
                    && endpoint.destination_id.is_none()
            }
            EndpointOwner::Destination {
                organization_id,
                destination_id,
            } => {
                endpoint.organization_id.as_ref() == Some(organization_id)
                    && endpoint.destination_id.as_ref() == Some(destination_id)
            }
        };
        if !consistent {
            return Err(Error::Data(format!(
                "endpoint {} names an organization or destination its owner does not have",
                endpoint.id
            )));
        }
        let (owner_kind, client_id, orchestrator_id) = match &endpoint.owner {
            EndpointOwner::Client { client_id } => (CLIENT, Some(client_id.to_string()), None),
            EndpointOwner::Orchestrator { orchestrator_id } => {
                (ORCHESTRATOR, None, Some(orchestrator_id.to_string()))
            }
            EndpointOwner::Platform { .. } => (PLATFORM, None, None),
            EndpointOwner::Destination { .. } => (DESTINATION, None, None),
        };
        let event_types =
            serde_json::to_string(endpoint.event_types.patterns()).map_err(|error| {
                Error::Data(format!(
                    "event types of endpoint {} cannot be serialized: {error}",
                    endpoint.id
                ))
            })?;
        Ok(Self {
            id: endpoint.id.to_string(),
            owner_kind: owner_kind.to_owned(),
            client_id,
            orchestrator_id,
            organization_id,
            destination_id,
            url: endpoint.url.clone(),
            event_types,
            description: endpoint.description.clone(),
            enabled: endpoint.enabled,
            secret: endpoint.secret.clone(),
            previous_secret: endpoint.previous_secret.clone(),
            previous_secret_expires_at: endpoint.previous_secret_expires_at.map(to_naive),
            created_at: to_naive(endpoint.created_at),
            updated_at: to_naive(endpoint.updated_at),
            scope: endpoint.scope.as_ref().map(permissions_text),
        })
    }
}

impl TryFrom<EndpointRow> for WebhookEndpoint {
    type Error = Error;
    fn try_from(row: EndpointRow) -> Result<Self, Error> {
        let organization_id = optional(
            "organization id",
            row.organization_id.as_deref(),
            OrganizationId::parse,
        )?;
        let destination_id = optional(
            "destination id",
            row.destination_id.as_deref(),
            DestinationId::parse,
        )?;
        let missing = |what: &str| {
            Error::Data(format!(
                "stored {} endpoint {} has no {what}",
                row.owner_kind, row.id
            ))
        };
        let owner = match row.owner_kind.as_str() {
            CLIENT => EndpointOwner::Client {
                client_id: optional("client id", row.client_id.as_deref(), ClientId::parse)?
                    .ok_or_else(|| missing("client id"))?,
            },
            ORCHESTRATOR => EndpointOwner::Orchestrator {
                orchestrator_id: optional(
                    "orchestrator id",
                    row.orchestrator_id.as_deref(),
                    OrchestratorId::parse,
                )?
                .ok_or_else(|| missing("orchestrator id"))?,
            },
            PLATFORM => EndpointOwner::Platform {
                organization_id: organization_id
                    .clone()
                    .ok_or_else(|| missing("organization id"))?,
            },
            DESTINATION => EndpointOwner::Destination {
                organization_id: organization_id
                    .clone()
                    .ok_or_else(|| missing("organization id"))?,
                destination_id: destination_id
                    .clone()
                    .ok_or_else(|| missing("destination id"))?,
            },
            other => {
                return Err(Error::Data(format!(
                    "stored endpoint owner kind {other:?} is unknown"
                )));
            }
        };
        let patterns: Vec<String> = serde_json::from_str(&row.event_types).map_err(|error| {
            Error::Data(format!(
                "stored event types of endpoint {} are invalid: {error}",
                row.id
            ))
        })?;
        Ok(WebhookEndpoint {
            id: parsed("endpoint id", &row.id, EndpointId::parse)?,
            owner,
            organization_id,
            destination_id,
            scope: row.scope.as_deref().map(permission_set).transpose()?,
            url: row.url,
            event_types: EventTypeFilter::from_stored(patterns),
            description: row.description,
            enabled: row.enabled,
            secret: row.secret,
            previous_secret: row.previous_secret,
            previous_secret_expires_at: row.previous_secret_expires_at.map(to_utc),
            created_at: to_utc(row.created_at),
            updated_at: to_utc(row.updated_at),
        })
    }
}

/// The changeable fields of an endpoint; `None` clears the description or the previous secret.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = webhook_endpoints, treat_none_as_null = true)]
pub(crate) struct EndpointChanges {
    pub(crate) url: String,
    pub(crate) event_types: String,
    pub(crate) description: Option<String>,
    pub(crate) enabled: bool,
    pub(crate) secret: String,
    pub(crate) previous_secret: Option<String>,
    pub(crate) previous_secret_expires_at: Option<NaiveDateTime>,
    pub(crate) updated_at: NaiveDateTime,
}

impl TryFrom<&WebhookEndpoint> for EndpointChanges {
    type Error = Error;
    fn try_from(endpoint: &WebhookEndpoint) -> Result<Self, Error> {
        let row = EndpointRow::try_from(endpoint)?;
        Ok(Self {
            url: row.url,
            event_types: row.event_types,
            description: row.description,
            enabled: row.enabled,
            secret: row.secret,
            previous_secret: row.previous_secret,
            previous_secret_expires_at: row.previous_secret_expires_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_deliveries, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct DeliveryRow {
    pub(crate) id: String,
    pub(crate) event_id: String,
    pub(crate) endpoint_id: String,
    pub(crate) attempt: i32,
    pub(crate) status: String,
    pub(crate) response_status: Option<i32>,
    pub(crate) response_body: Option<String>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) next_attempt_at: Option<NaiveDateTime>,
    pub(crate) first_attempt_at: NaiveDateTime,
    pub(crate) created_at: NaiveDateTime,
    /// Which worker holds it is not part of the attempt: only new attempts set it here.
    pub(crate) lease_until: Option<NaiveDateTime>,
}

impl DeliveryRow {
    /// A new attempt reserved until `until` for the worker that creates it.
    pub(crate) fn leased(delivery: &Delivery, until: NaiveDateTime) -> Result<Self, Error> {
        Ok(Self {
            lease_until: Some(until),
            ..Self::try_from(delivery)?
        })
    }
}

impl TryFrom<&Delivery> for DeliveryRow {
    type Error = Error;
    fn try_from(delivery: &Delivery) -> Result<Self, Error> {
        Ok(Self {
            id: delivery.id.to_string(),
            event_id: delivery.event_id.to_string(),
            endpoint_id: delivery.endpoint_id.to_string(),
            attempt: to_i32("attempt", delivery.attempt)?,
            status: delivery.status.as_str().to_owned(),
            response_status: delivery.response_status.map(i32::from),
            response_body: delivery.response_body.clone(),
            duration_ms: delivery
                .duration_ms
                .map(|duration| to_i64("duration_ms", duration))
                .transpose()?,
            next_attempt_at: delivery.next_attempt_at.map(to_naive),
            first_attempt_at: to_naive(delivery.first_attempt_at),
            created_at: to_naive(delivery.created_at),
            lease_until: None,
        })
    }
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = Error;
    fn try_from(row: DeliveryRow) -> Result<Self, Error> {
        Ok(Delivery {
            id: parsed("delivery id", &row.id, DeliveryId::parse)?,
            event_id: parsed("event id", &row.event_id, EventId::parse)?,
            endpoint_id: parsed("endpoint id", &row.endpoint_id, EndpointId::parse)?,
            attempt: to_u32("attempt", row.attempt)?,
            status: known("delivery status", &row.status, DeliveryStatus::parse)?,
            response_status: row
                .response_status
                .map(|status| {
                    u16::try_from(status).map_err(|_| {
                        Error::Data(format!("stored response status {status} is out of range"))
                    })
                })
                .transpose()?,
            response_body: row.response_body,
            duration_ms: row
                .duration_ms
                .map(|duration| to_u64("duration_ms", duration))
                .transpose()?,
            next_attempt_at: row.next_attempt_at.map(to_utc),
            first_attempt_at: to_utc(row.first_attempt_at),
            created_at: to_utc(row.created_at),
        })
    }
}

/// What an attempt's outcome changes; the lease ends with it.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = webhook_deliveries, treat_none_as_null = true)]
pub(crate) struct DeliveryOutcome {
    pub(crate) status: String,
    pub(crate) response_status: Option<i32>,
    pub(crate) response_body: Option<String>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) next_attempt_at: Option<NaiveDateTime>,
    pub(crate) lease_until: Option<NaiveDateTime>,
}

impl TryFrom<&Delivery> for DeliveryOutcome {
    type Error = Error;
    fn try_from(delivery: &Delivery) -> Result<Self, Error> {
        let row = DeliveryRow::try_from(delivery)?;
        Ok(Self {
            status: row.status,
            response_status: row.response_status,
            response_body: row.response_body,
            duration_ms: row.duration_ms,
            next_attempt_at: row.next_attempt_at,
            lease_until: None,
        })
    }
}
