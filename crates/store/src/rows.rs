//! Table rows and their mapping to the domain types. Reading a row that breaks a domain rule
//! (a malformed id or slug, an unknown key kind) is an error, never a panic.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use mandate_domain::agents::AgentKey;
use mandate_domain::customers::{Customer, Email};
use mandate_domain::events::{Audience, Event, EventType};
use mandate_domain::ids::{
    ClientId, CustomerId, DeliveryId, DestinationId, EndpointId, EventId, KeyId, OrchestratorId,
    OrganizationId, PaymentId, PaymentLinkId, RequestId,
};
use mandate_domain::model::{
    ApiKey, Client, ClientStatus, Destination, KeyOwner, Orchestrator, Organization,
};
use mandate_domain::payments::{Direction, Payment, PaymentLink, PaymentRequest, RequestStatus};
use mandate_domain::values::{Amount, Currency, Permission, PermissionSet, Slug, Total};
use mandate_domain::webhooks::{
    Delivery, DeliveryStatus, EndpointOwner, EventTypeFilter, WebhookEndpoint,
};

use crate::pool::Error;
use crate::schema::{
    api_keys, client_ids, customers, destinations, events, orchestrators, organizations,
    payment_links, payment_requests, payments, webhook_deliveries, webhook_endpoints,
};

/// The `api_keys.kind` of each owner.
pub(crate) const PLATFORM: &str = "platform";
pub(crate) const DESTINATION: &str = "destination";
pub(crate) const ORCHESTRATOR: &str = "orchestrator";

/// UTC without a zone, cut to microseconds: PostgreSQL keeps no more, so SQLite keeps the same.
pub(crate) fn to_naive(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc().trunc_subsecs(6)
}

pub(crate) fn to_utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

pub(crate) fn parsed<T, E: std::fmt::Display>(
    what: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, Error> {
    parse(value)
        .map_err(|error| Error::Data(format!("stored {what} {value:?} is invalid: {error}")))
}

fn to_i32(what: &str, value: u32) -> Result<i32, Error> {
    i32::try_from(value).map_err(|_| Error::Data(format!("{what} {value} is out of range")))
}

fn to_u32(what: &str, value: i32) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| Error::Data(format!("stored {what} {value} is out of range")))
}

pub(crate) fn to_i64(what: &str, value: u64) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| Error::Data(format!("{what} {value} is out of range")))
}

pub(crate) fn to_u64(what: &str, value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Data(format!("stored {what} {value} is out of range")))
}

pub(crate) fn optional<T, E: std::fmt::Display>(
    what: &str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, Error> {
    value.map(|value| parsed(what, value, parse)).transpose()
}

/// Enum columns: parsing returns `None` for an unknown spelling.
pub(crate) fn known<T>(
    what: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, Error> {
    parse(value).ok_or_else(|| Error::Data(format!("stored {what} {value:?} is unknown")))
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = organizations, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct OrganizationRow {
    id: String,
    name: String,
    created_at: NaiveDateTime,
}

impl From<&Organization> for OrganizationRow {
    fn from(organization: &Organization) -> Self {
        Self {
            id: organization.id.to_string(),
            name: organization.name.clone(),
            created_at: to_naive(organization.created_at),
        }
    }
}

impl TryFrom<OrganizationRow> for Organization {
    type Error = Error;
    fn try_from(row: OrganizationRow) -> Result<Self, Error> {
        Ok(Organization {
            id: parsed("organization id", &row.id, OrganizationId::parse)?,
            name: row.name,
            created_at: to_utc(row.created_at),
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = orchestrators, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct OrchestratorRow {
    id: String,
    slug: String,
    name: String,
    created_at: NaiveDateTime,
}

impl From<&Orchestrator> for OrchestratorRow {
    fn from(orchestrator: &Orchestrator) -> Self {
        Self {
            id: orchestrator.id.to_string(),
            slug: orchestrator.slug.to_string(),
            name: orchestrator.name.clone(),
            created_at: to_naive(orchestrator.created_at),
        }
    }
}

impl TryFrom<OrchestratorRow> for Orchestrator {
    type Error = Error;
    fn try_from(row: OrchestratorRow) -> Result<Self, Error> {
        Ok(Orchestrator {
            id: parsed("orchestrator id", &row.id, OrchestratorId::parse)?,
            slug: parsed("orchestrator slug", &row.slug, Slug::parse)?,
            name: row.name,
            created_at: to_utc(row.created_at),
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = destinations, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct DestinationRow {
    id: String,
    organization_id: String,
    slug: String,
    display_name: String,
    payment_address: Option<String>,
    max_agents: i32,
    pending_claim_ttl_seconds: i32,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl TryFrom<&Destination> for DestinationRow {
    type Error = Error;
    fn try_from(destination: &Destination) -> Result<Self, Error> {
        Ok(Self {
            id: destination.id.to_string(),
            organization_id: destination.organization_id.to_string(),
            slug: destination.slug.to_string(),
            display_name: destination.display_name.clone(),
            payment_address: destination.payment_address.clone(),
            max_agents: to_i32("max_agents", destination.max_agents)?,
            pending_claim_ttl_seconds: to_i32(
                "pending_claim_ttl_seconds",
                destination.pending_claim_ttl_seconds,
            )?,
            created_at: to_naive(destination.created_at),
            updated_at: to_naive(destination.updated_at),
        })
    }
}

impl TryFrom<DestinationRow> for Destination {
    type Error = Error;
    fn try_from(row: DestinationRow) -> Result<Self, Error> {
        Ok(Destination {
            id: parsed("destination id", &row.id, DestinationId::parse)?,
            organization_id: parsed(
                "organization id",
                &row.organization_id,
                OrganizationId::parse,
            )?,
            slug: parsed("destination slug", &row.slug, Slug::parse)?,
            display_name: row.display_name,
            payment_address: row.payment_address,
            max_agents: to_u32("max_agents", row.max_agents)?,
            pending_claim_ttl_seconds: to_u32(
                "pending_claim_ttl_seconds",
                row.pending_claim_ttl_seconds,
            )?,
            created_at: to_utc(row.created_at),
            updated_at: to_utc(row.updated_at),
        })
    }
}

/// The changeable fields of a destination; `None` clears the payment address.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = destinations, treat_none_as_null = true)]
pub(crate) struct DestinationChanges {
    display_name: String,
    payment_address: Option<String>,
    max_agents: i32,
    pending_claim_ttl_seconds: i32,
    updated_at: NaiveDateTime,
}

impl TryFrom<&Destination> for DestinationChanges {
    type Error = Error;
    fn try_from(destination: &Destination) -> Result<Self, Error> {
        Ok(Self {
            display_name: destination.display_name.clone(),
            payment_address: destination.payment_address.clone(),
            max_agents: to_i32("max_agents", destination.max_agents)?,
            pending_claim_ttl_seconds: to_i32(
                "pending_claim_ttl_seconds",
                destination.pending_claim_ttl_seconds,
            )?,
            updated_at: to_naive(destination.updated_at),
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct KeyRow {
    id: String,
    kind: String,
    organization_id: Option<String>,
    destination_id: Option<String>,
    orchestrator_id: Option<String>,
    key_hash: String,
    prefix: String,
    created_at: NaiveDateTime,
    last_used_at: Option<NaiveDateTime>,
    expires_at: Option<NaiveDateTime>,
    revoked_at: Option<NaiveDateTime>,
}

impl From<&ApiKey> for KeyRow {
    fn from(key: &ApiKey) -> Self {
        let (kind, organization_id, destination_id, orchestrator_id) = match &key.owner {
            KeyOwner::Platform { organization_id } => {
                (PLATFORM, Some(organization_id.to_string()), None, None)
            }
            KeyOwner::Destination {
                organization_id,
                destination_id,
            } => (
                DESTINATION,
                Some(organization_id.to_string()),
                Some(destination_id.to_string()),
                None,
            ),
            KeyOwner::Orchestrator { orchestrator_id } => {
                (ORCHESTRATOR, None, None, Some(orchestrator_id.to_string()))
            }
        };
        Self {
            id: key.id.to_string(),
            kind: kind.to_owned(),
            organization_id,
            destination_id,
            orchestrator_id,
            key_hash: key.hash.clone(),
            prefix: key.prefix.clone(),
            created_at: to_naive(key.created_at),
            last_used_at: key.last_used_at.map(to_naive),
            expires_at: key.expires_at.map(to_naive),
            revoked_at: key.revoked_at.map(to_naive),
        }
    }
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = Error;
    fn try_from(row: KeyRow) -> Result<Self, Error> {
        let missing = |column: &str| {
            Error::Data(format!(
                "stored {} key {} has no {column}",
                row.kind, row.id
            ))
        };
        let owner = match row.kind.as_str() {
            PLATFORM => KeyOwner::Platform {
                organization_id: parsed(
                    "organization id",
                    row.organization_id
                        .as_deref()
                        .ok_or_else(|| missing("organization_id"))?,
                    OrganizationId::parse,
                )?,
            },
            DESTINATION => KeyOwner::Destination {
                organization_id: parsed(
                    "organization id",
                    row.organization_id
                        .as_deref()
                        .ok_or_else(|| missing("organization_id"))?,
                    OrganizationId::parse,
                )?,
                destination_id: parsed(
                    "destination id",
                    row.destination_id
                        .as_deref()
                        .ok_or_else(|| missing("destination_id"))?,
                    DestinationId::parse,
                )?,
            },
            ORCHESTRATOR => KeyOwner::Orchestrator {
                orchestrator_id: parsed(
                    "orchestrator id",
                    row.orchestrator_id
                        .as_deref()
                        .ok_or_else(|| missing("orchestrator_id"))?,
                    OrchestratorId::parse,
                )?,
            },
            other => {
                return Err(Error::Data(format!(
                    "stored key {} has unknown kind {other:?}",
                    row.id
                )));
            }
        };
        Ok(ApiKey {
            id: parsed("key id", &row.id, KeyId::parse)?,
            owner,
            hash: row.key_hash,
            prefix: row.prefix,
            created_at: to_utc(row.created_at),
            last_used_at: row.last_used_at.map(to_utc),
            expires_at: row.expires_at.map(to_utc),
            revoked_at: row.revoked_at.map(to_utc),
        })
    }
}

pub(crate) const ACTIVE: &str = "active";
pub(crate) const REVOKED: &str = "revoked";

pub(crate) fn client_status_str(status: ClientStatus) -> &'static str {
    match status {
        ClientStatus::Active => ACTIVE,
        ClientStatus::Revoked => REVOKED,
    }
}

fn client_status(value: &str) -> Option<ClientStatus> {
    match value {
        ACTIVE => Some(ClientStatus::Active),
        REVOKED => Some(ClientStatus::Revoked),
        _ => None,
    }
}

/// Sorted and space-separated, so that equal sets are equal text.
pub(crate) fn permissions_text(permissions: &PermissionSet) -> String {
    let mut names: Vec<&str> = permissions.iter().map(Permission::as_str).collect();
    names.sort_unstable();
    names.join(" ")
}

pub(crate) fn permission_set(value: &str) -> Result<PermissionSet, Error> {
    value
        .split_whitespace()
        .map(|name| parsed("permission", name, Permission::parse))
        .collect()
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = client_ids, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct ClientRow {
    id: String,
    organization_id: String,
    destination_id: String,
    orchestrator_id: String,
    label: Option<String>,
    permissions: String,
    version: i64,
    status: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    agent_public_key: Option<String>,
}

impl TryFrom<&Client> for ClientRow {
    type Error = Error;
    fn try_from(client: &Client) -> Result<Self, Error> {
        Ok(Self {
            id: client.id.to_string(),
            organization_id: client.organization_id.to_string(),
            destination_id: client.destination_id.to_string(),
            orchestrator_id: client.orchestrator_id.to_string(),
            label: client.label.clone(),
            permissions: permissions_text(&client.permissions),
            version: to_i64("client version", client.version)?,
            status: client_status_str(client.status).to_owned(),
            created_at: to_naive(client.created_at),
            updated_at: to_naive(client.updated_at),
            agent_public_key: client.agent_key.as_ref().map(|key| key.to_string()),
        })
    }
}

impl TryFrom<ClientRow> for Client {
    type Error = Error;
    fn try_from(row: ClientRow) -> Result<Self, Error> {
        Ok(Client {
            id: parsed("client id", &row.id, ClientId::parse)?,
            organization_id: parsed(
                "organization id",
                &row.organization_id,
                OrganizationId::parse,
            )?,
            destination_id: parsed("destination id", &row.destination_id, DestinationId::parse)?,
            orchestrator_id: parsed(
                "orchestrator id",
                &row.orchestrator_id,
                OrchestratorId::parse,
            )?,
            label: row.label,
            permissions: permission_set(&row.permissions)?,
            agent_key: optional(
                "agent public key",
                row.agent_public_key.as_deref(),
                AgentKey::parse,
            )?,
            version: to_u64("client version", row.version)?,
            status: known("client status", &row.status, client_status)?,
            created_at: to_utc(row.created_at),
            updated_at: to_utc(row.updated_at),
        })
    }
}

/// The changeable fields of a client ID.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = client_ids)]
pub(crate) struct ClientChanges {
    permissions: String,
    status: String,
    version: i64,
    updated_at: NaiveDateTime,
}

impl TryFrom<&Client> for ClientChanges {
    type Error = Error;
    fn try_from(client: &Client) -> Result<Self, Error> {
        Ok(Self {
            permissions: permissions_text(&client.permissions),
            status: client_status_str(client.status).to_owned(),
            version: to_i64("client version", client.version)?,
            updated_at: to_naive(client.updated_at),
        })
    }
}

fn metadata_text(metadata: &BTreeMap<String, String>) -> Result<String, Error> {
    serde_json::to_string(metadata)
        .map_err(|error| Error::Data(format!("metadata cannot be serialized: {error}")))
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = payment_requests, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct RequestRow {
    pub(crate) id: String,
    organization_id: String,
    destination_id: String,
    direction: String,
    amount: String,
    currency: String,
    amount_paid: String,
    status: String,
    customer_id: Option<String>,
    reference: Option<String>,
    description: Option<String>,
    due_at: Option<NaiveDateTime>,
    expires_at: Option<NaiveDateTime>,
    metadata: String,
    created_by: String,
    client_id: Option<String>,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl TryFrom<&PaymentRequest> for RequestRow {
    type Error = Error;
    fn try_from(request: &PaymentRequest) -> Result<Self, Error> {
        Ok(Self {
            id: request.id.to_string(),
            organization_id: request.organization_id.to_string(),
            destination_id: request.destination_id.to_string(),
            direction: request.direction.as_str().to_owned(),
            amount: request.amount.to_string(),
            currency: request.currency.as_str().to_owned(),
            amount_paid: request.amount_paid.to_string(),
            status: request.status.as_str().to_owned(),
            customer_id: request.customer_id.clone(),
            reference: request.reference.clone(),
            description: request.description.clone(),
            due_at: request.due_at.map(to_naive),
            expires_at: request.expires_at.map(to_naive),
            metadata: metadata_text(&request.metadata)?,
            created_by: request.created_by.clone(),
            client_id: request.client_id.as_ref().map(ToString::to_string),
            version: to_i64("request version", request.version)?,
            created_at: to_naive(request.created_at),
            updated_at: to_naive(request.updated_at),
        })
    }
}

impl TryFrom<RequestRow> for PaymentRequest {
    type Error = Error;
    fn try_from(row: RequestRow) -> Result<Self, Error> {
        let metadata = serde_json::from_str(&row.metadata).map_err(|error| {
            Error::Data(format!(
                "stored metadata of request {} is invalid: {error}",
                row.id
            ))
        })?;
        Ok(PaymentRequest {
            id: parsed("request id", &row.id, RequestId::parse)?,
            organization_id: parsed(
                "organization id",
                &row.organization_id,
                OrganizationId::parse,
            )?,
            destination_id: parsed("destination id", &row.destination_id, DestinationId::parse)?,
            direction: known("direction", &row.direction, Direction::parse)?,
            amount: parsed("amount", &row.amount, Amount::parse)?,
            currency: parsed("currency", &row.currency, Currency::parse)?,
            amount_paid: parsed("amount paid", &row.amount_paid, Total::parse)?,
            status: known("request status", &row.status, RequestStatus::parse)?,
            customer_id: row.customer_id,
            reference: row.reference,
            description: row.description,
            due_at: row.due_at.map(to_utc),
            expires_at: row.expires_at.map(to_utc),
            metadata,
            created_by: row.created_by,
            client_id: optional("client id", row.client_id.as_deref(), ClientId::parse)?,
            version: to_u64("request version", row.version)?,
            created_at: to_utc(row.created_at),
            updated_at: to_utc(row.updated_at),
        })
    }
}

/// The changeable fields of a payment request.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = payment_requests)]
pub(crate) struct RequestChanges {
    amount_paid: String,
    status: String,
    version: i64,
    updated_at: NaiveDateTime,
}

impl TryFrom<&PaymentRequest> for RequestChanges {
    type Error = Error;
    fn try_from(request: &PaymentRequest) -> Result<Self, Error> {
        Ok(Self {
            amount_paid: request.amount_paid.to_string(),
            status: request.status.as_str().to_owned(),
            version: to_i64("request version", request.version)?,
            updated_at: to_naive(request.updated_at),
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct PaymentRow {
    id: String,
    organization_id: String,
    destination_id: String,
    request_id: String,
    amount: String,
    reference: String,
    paid_at: NaiveDateTime,
    created_by: String,
    created_at: NaiveDateTime,
}

impl From<&Payment> for PaymentRow {
    fn from(payment: &Payment) -> Self {
        Self {
            id: payment.id.to_string(),
            organization_id: payment.organization_id.to_string(),
            destination_id: payment.destination_id.to_string(),
            request_id: payment.request_id.to_string(),
            amount: payment.amount.to_string(),
            reference: payment.reference.clone(),
            paid_at: to_naive(payment.paid_at),
            created_by: payment.created_by.clone(),
            created_at: to_naive(payment.created_at),
        }
    }
}

impl TryFrom<PaymentRow> for Payment {
    type Error = Error;
    fn try_from(row: PaymentRow) -> Result<Self, Error> {
        Ok(Payment {
            id: parsed("payment id", &row.id, PaymentId::parse)?,
            request_id: parsed("request id", &row.request_id, RequestId::parse)?,
            organization_id: parsed(
                "organization id",
                &row.organization_id,
                OrganizationId::parse,
            )?,
            destination_id: parsed("destination id", &row.destination_id, DestinationId::parse)?,
            amount: parsed("payment amount", &row.amount, Amount::parse)?,
            reference: row.reference,
            paid_at: to_utc(row.paid_at),
            created_by: row.created_by,
            created_at: to_utc(row.created_at),
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = payment_links, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct PaymentLinkRow {
    id: String,
    organization_id: String,
    destination_id: String,
    request_id: String,
    token_hash: String,
    expires_at: NaiveDateTime,
    created_at: NaiveDateTime,
}

impl From<&PaymentLink> for PaymentLinkRow {
    fn from(link: &PaymentLink) -> Self {
        Self {
            id: link.id.to_string(),
            organization_id: link.organization_id.to_string(),
            destination_id: link.destination_id.to_string(),
            request_id: link.request_id.to_string(),
            token_hash: link.token_hash.clone(),
            expires_at: to_naive(link.expires_at),
            created_at: to_naive(link.created_at),
        }
    }
}

impl TryFrom<PaymentLinkRow> for PaymentLink {
    type Error = Error;
    fn try_from(row: PaymentLinkRow) -> Result<Self, Error> {
        Ok(PaymentLink {
            id: parsed("payment link id", &row.id, PaymentLinkId::parse)?,
            request_id: parsed("request id", &row.request_id, RequestId::parse)?,
            organization_id: parsed(
                "organization id",
                &row.organization_id,
                OrganizationId::parse,
            )?,
            destination_id: parsed("destination id", &row.destination_id, DestinationId::parse)?,
            token_hash: row.token_hash,
            expires_at: to_utc(row.expires_at),
            created_at: to_utc(row.created_at),
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = events, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct EventRow {
    id: String,
    organization_id: Option<String>,
    destination_id: Option<String>,
    orchestrator_id: Option<String>,
    client_id: Option<String>,
    direction: Option<String>,
    event_type: String,
    data: String,
    created_at: NaiveDateTime,
    endpoint_id: Option<String>,
    family: String,
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

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = customers, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct CustomerRow {
    id: String,
    organization_id: String,
    email: Option<String>,
    email_normalized: Option<String>,
    name: Option<String>,
    metadata: String,
    created_by: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl TryFrom<&Customer> for CustomerRow {
    type Error = Error;
    fn try_from(customer: &Customer) -> Result<Self, Error> {
        Ok(Self {
            id: customer.id.to_string(),
            organization_id: customer.organization_id.to_string(),
            email: customer
                .email
                .as_ref()
                .map(|email| email.as_str().to_owned()),
            email_normalized: customer.email.as_ref().map(Email::normalized),
            name: customer.name.clone(),
            metadata: metadata_text(&customer.metadata)?,
            created_by: customer.created_by.clone(),
            created_at: to_naive(customer.created_at),
            updated_at: to_naive(customer.updated_at),
        })
    }
}

impl TryFrom<CustomerRow> for Customer {
    type Error = Error;
    fn try_from(row: CustomerRow) -> Result<Self, Error> {
        let metadata = serde_json::from_str(&row.metadata).map_err(|error| {
            Error::Data(format!(
                "stored metadata of customer {} is invalid: {error}",
                row.id
            ))
        })?;
        Ok(Customer {
            id: parsed("customer id", &row.id, CustomerId::parse)?,
            organization_id: parsed(
                "organization id",
                &row.organization_id,
                OrganizationId::parse,
            )?,
            email: optional("customer email", row.email.as_deref(), Email::parse)?,
            name: row.name,
            metadata,
            created_by: row.created_by,
            created_at: to_utc(row.created_at),
            updated_at: to_utc(row.updated_at),
        })
    }
}

/// The changeable fields of a customer; `None` clears the email or the name.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = customers, treat_none_as_null = true)]
pub(crate) struct CustomerChanges {
    email: Option<String>,
    email_normalized: Option<String>,
    name: Option<String>,
    metadata: String,
    updated_at: NaiveDateTime,
}

impl TryFrom<&Customer> for CustomerChanges {
    type Error = Error;
    fn try_from(customer: &Customer) -> Result<Self, Error> {
        let row = CustomerRow::try_from(customer)?;
        Ok(Self {
            email: row.email,
            email_normalized: row.email_normalized,
            name: row.name,
            metadata: row.metadata,
            updated_at: row.updated_at,
        })
    }
}

/// The `webhook_endpoints.owner_kind` of each owner.
pub(crate) const CLIENT: &str = "client";

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_endpoints, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct EndpointRow {
    id: String,
    owner_kind: String,
    client_id: Option<String>,
    orchestrator_id: Option<String>,
    organization_id: Option<String>,
    destination_id: Option<String>,
    url: String,
    event_types: String,
    description: Option<String>,
    enabled: bool,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    scope: Option<String>,
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
    url: String,
    event_types: String,
    description: Option<String>,
    enabled: bool,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<NaiveDateTime>,
    updated_at: NaiveDateTime,
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
    id: String,
    event_id: String,
    endpoint_id: String,
    attempt: i32,
    status: String,
    response_status: Option<i32>,
    response_body: Option<String>,
    duration_ms: Option<i64>,
    next_attempt_at: Option<NaiveDateTime>,
    first_attempt_at: NaiveDateTime,
    created_at: NaiveDateTime,
    /// Which worker holds it is not part of the attempt: only new attempts set it here.
    lease_until: Option<NaiveDateTime>,
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
    status: String,
    response_status: Option<i32>,
    response_body: Option<String>,
    duration_ms: Option<i64>,
    next_attempt_at: Option<NaiveDateTime>,
    lease_until: Option<NaiveDateTime>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_that_break_domain_rules_are_errors() {
        let row = KeyRow {
            id: KeyId::generate().to_string(),
            kind: "admin".into(),
            organization_id: None,
            destination_id: None,
            orchestrator_id: None,
            key_hash: "h".into(),
            prefix: "p".into(),
            created_at: to_naive(Utc::now()),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
        };
        assert!(matches!(ApiKey::try_from(row), Err(Error::Data(_))));
        let row = OrchestratorRow {
            id: OrchestratorId::generate().to_string(),
            slug: "Not A Slug".into(),
            name: "n".into(),
            created_at: to_naive(Utc::now()),
        };
        assert!(matches!(Orchestrator::try_from(row), Err(Error::Data(_))));
    }

    fn request_row() -> RequestRow {
        let at = to_naive(Utc::now());
        RequestRow {
            id: RequestId::generate().to_string(),
            organization_id: OrganizationId::generate().to_string(),
            destination_id: DestinationId::generate().to_string(),
            direction: "incoming".into(),
            amount: "12.5".into(),
            currency: "USD".into(),
            amount_paid: "0".into(),
            status: "open".into(),
            customer_id: None,
            reference: None,
            description: None,
            due_at: None,
            expires_at: None,
            metadata: "{}".into(),
            created_by: "dst_x".into(),
            client_id: None,
            version: 1,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn payment_rows_that_break_domain_rules_are_errors() {
        assert!(PaymentRequest::try_from(request_row()).is_ok());
        let broken: [fn(&mut RequestRow); 6] = [
            |row| row.amount = "12.5e0".into(),
            |row| row.amount_paid = "-1".into(),
            |row| row.status = "refunded".into(),
            |row| row.direction = "sideways".into(),
            |row| row.metadata = "[1]".into(),
            |row| row.version = -1,
        ];
        for breakage in broken {
            let mut row = request_row();
            breakage(&mut row);
            assert!(matches!(PaymentRequest::try_from(row), Err(Error::Data(_))));
        }
        let at = to_naive(Utc::now());
        let client = ClientRow {
            id: ClientId::generate().to_string(),
            organization_id: OrganizationId::generate().to_string(),
            destination_id: DestinationId::generate().to_string(),
            orchestrator_id: OrchestratorId::generate().to_string(),
            label: None,
            permissions: "create:incoming read:everything".into(),
            version: 1,
            status: "active".into(),
            created_at: at,
            updated_at: at,
            agent_public_key: None,
        };
        assert!(matches!(Client::try_from(client), Err(Error::Data(_))));
        let event = EventRow {
            id: EventId::generate().to_string(),
            organization_id: None,
            destination_id: None,
            orchestrator_id: None,
            client_id: None,
            direction: None,
            event_type: "payment_request.refunded".into(),
            data: "{}".into(),
            created_at: at,
            endpoint_id: None,
            family: "payment_request".into(),
            fanned_out: false,
        };
        assert!(matches!(Event::try_from(event), Err(Error::Data(_))));
    }

    #[test]
    fn permissions_are_stored_sorted_and_read_back() {
        let set: PermissionSet = [Permission::ReadOutgoing, Permission::CreateIncoming]
            .into_iter()
            .collect();
        assert_eq!(permissions_text(&set), "create:incoming read:outgoing");
        assert_eq!(
            permission_set("read:outgoing create:incoming").ok(),
            Some(set)
        );
        assert_eq!(permission_set("").ok(), Some(PermissionSet::default()));
    }

    /// The endpoint list of a narrowed credential matches stored scopes with `LIKE`: that is
    /// exact only while no permission's name is part of another's.
    #[test]
    fn no_permission_name_is_part_of_another() {
        for one in Permission::ALL {
            for other in Permission::ALL {
                assert!(one == other || !other.as_str().contains(one.as_str()));
            }
        }
    }
}
