//! Client IDs: their rows, port and scoped lists.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::{insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::agents::AgentKey;
use mandate_domain::events::Event;
use mandate_domain::ids::{ClientId, DestinationId, OrchestratorId, OrganizationId};
use mandate_domain::model::{Client, ClientStatus};
use mandate_domain::policy::ClientScope;
use mandate_domain::ports::{ClientStore, Page, PageRequest, StoreError};
use mandate_domain::values::{Permission, PermissionSet};

use crate::DbStore;
use crate::errors::Error;
use crate::outbox::{Outbox, db_write};
use crate::page::{empty_page, into_page, page_cursor, page_limit, sql_limit};
use crate::pool::db_run;
use crate::requests::version_column;
use crate::rows::{known, optional, parsed, to_i64, to_naive, to_u64, to_utc};
use crate::schema::{claims, client_ids};

pub(crate) const ACTIVE: &str = "active";

pub(crate) const REVOKED: &str = "revoked";

pub(crate) fn client_status_str(status: ClientStatus) -> &'static str {
    match status {
        ClientStatus::Active => ACTIVE,
        ClientStatus::Revoked => REVOKED,
    }
}

pub(crate) fn client_status(value: &str) -> Option<ClientStatus> {
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
    pub(crate) id: String,
    pub(crate) organization_id: String,
    pub(crate) destination_id: String,
    pub(crate) orchestrator_id: String,
    pub(crate) label: Option<String>,
    pub(crate) permissions: String,
    pub(crate) version: i64,
    pub(crate) status: String,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) updated_at: NaiveDateTime,
    pub(crate) agent_public_key: Option<String>,
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
    pub(crate) permissions: String,
    pub(crate) status: String,
    pub(crate) version: i64,
    pub(crate) updated_at: NaiveDateTime,
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

pub(crate) fn metadata_text(metadata: &BTreeMap<String, String>) -> Result<String, Error> {
    serde_json::to_string(metadata)
        .map_err(|error| Error::Data(format!("metadata cannot be serialized: {error}")))
}

/// The SQL form of a [`ClientScope`] that can match something (client IDs and claims are
/// seen by the same principals).
pub(crate) enum ClientFilter {
    Organization(String),
    Destination(String),
    Orchestrator(String),
}

impl ClientFilter {
    /// `None` for a scope that matches nothing: it needs no query.
    pub(crate) fn of(scope: &ClientScope) -> Option<Self> {
        match scope {
            ClientScope::Organization(id) => Some(Self::Organization(id.to_string())),
            ClientScope::Destination(id) => Some(Self::Destination(id.to_string())),
            ClientScope::Orchestrator(id) => Some(Self::Orchestrator(id.to_string())),
            ClientScope::Nothing => None,
        }
    }
}

#[async_trait]
impl ClientStore for DbStore {
    async fn insert_client(&self, client: &Client, event: &Event) -> Result<(), StoreError> {
        let row = ClientRow::try_from(client)?;
        let outbox = Outbox::of(std::slice::from_ref(event))?;
        db_write!(self, outbox, |conn| {
            insert_into(client_ids::table)
                .values(&row)
                .execute(conn)
                .await?;
            outbox.store(conn).await?;
            Ok(())
        })
    }

    async fn client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        let id = id.to_string();
        db_run!(self, |conn| {
            let row = client_ids::table
                .find(&id)
                .select(ClientRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(Client::try_from).transpose()
        })
    }

    async fn client_with_approval_expiry(
        &self,
        id: &ClientId,
    ) -> Result<Option<(Client, Option<DateTime<Utc>>)>, StoreError> {
        let id = id.to_string();
        db_run!(self, |conn| {
            // At most one claim creates a client ID (`claims_client_id_idx`).
            let row = client_ids::table
                .left_join(claims::table.on(claims::client_id.eq(client_ids::id.nullable())))
                .filter(client_ids::id.eq(&id))
                .select((ClientRow::as_select(), claims::expires_at.nullable()))
                .first::<(ClientRow, Option<chrono::NaiveDateTime>)>(conn)
                .await
                .optional()?;
            row.map(|(client, expires_at)| Ok((Client::try_from(client)?, expires_at.map(to_utc))))
                .transpose()
        })
    }

    async fn list_clients(
        &self,
        scope: &ClientScope,
        status: Option<ClientStatus>,
        page: &PageRequest,
    ) -> Result<Page<Client>, StoreError> {
        let Some(filter) = ClientFilter::of(scope) else {
            return Ok(empty_page());
        };
        let status = status.map(client_status_str);
        let limit = page_limit(page);
        let cursor = page_cursor(page, ClientId::parse);
        db_run!(self, |conn| {
            let mut query = client_ids::table
                .select(ClientRow::as_select())
                .order(client_ids::id.desc())
                .limit(sql_limit(limit + 1))
                .into_boxed();
            query = match &filter {
                ClientFilter::Organization(id) => {
                    query.filter(client_ids::organization_id.eq(id.as_str()))
                }
                ClientFilter::Destination(id) => {
                    query.filter(client_ids::destination_id.eq(id.as_str()))
                }
                ClientFilter::Orchestrator(id) => {
                    query.filter(client_ids::orchestrator_id.eq(id.as_str()))
                }
            };
            if let Some(status) = status {
                query = query.filter(client_ids::status.eq(status));
            }
            if let Some(cursor) = &cursor {
                query = query.filter(client_ids::id.lt(cursor.as_str()));
            }
            into_page(query.load(conn).await?, limit)
        })
    }

    async fn update_client(
        &self,
        client: &Client,
        expected_version: u64,
        event: &Event,
    ) -> Result<bool, StoreError> {
        let id = client.id.to_string();
        let changes = ClientChanges::try_from(client)?;
        let expected = version_column(expected_version)?;
        let outbox = Outbox::of(std::slice::from_ref(event))?;
        db_write!(self, outbox, |conn| {
            let updated = update(client_ids::table.find(&id))
                .filter(client_ids::version.eq(expected))
                .set(&changes)
                .execute(conn)
                .await?;
            if updated == 0 {
                return Ok(false);
            }
            outbox.store(conn).await?;
            Ok(true)
        })
    }
}
