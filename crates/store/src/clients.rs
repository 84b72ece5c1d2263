//! Client IDs: their rows, port and scoped lists.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
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
use crate::dialect::Dialect;
use crate::errors::Error;
use crate::outbox::{Outbox, db_write};
use crate::page::{db_page, empty_page};
use crate::pool::{db_first, db_run};
use crate::requests::version_column;
use crate::rows::{At, Maybe, Spelled, parsed, to_i64, to_u64};
use crate::schema::{claims, client_ids};

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
    #[diesel(deserialize_as = String, serialize_as = String)]
    id: ClientId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    organization_id: OrganizationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    destination_id: DestinationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    orchestrator_id: OrchestratorId,
    label: Option<String>,
    #[diesel(embed)]
    changes: ClientChanges,
    #[diesel(deserialize_as = At, serialize_as = At)]
    created_at: DateTime<Utc>,
    #[diesel(deserialize_as = Maybe<String>, serialize_as = Maybe<String>)]
    agent_public_key: Option<AgentKey>,
}

impl TryFrom<&Client> for ClientRow {
    type Error = Error;
    fn try_from(client: &Client) -> Result<Self, Error> {
        Ok(Self {
            id: client.id.clone(),
            organization_id: client.organization_id.clone(),
            destination_id: client.destination_id.clone(),
            orchestrator_id: client.orchestrator_id.clone(),
            label: client.label.clone(),
            changes: ClientChanges::try_from(client)?,
            created_at: client.created_at,
            agent_public_key: client.agent_key.clone(),
        })
    }
}

impl TryFrom<ClientRow> for Client {
    type Error = Error;
    fn try_from(row: ClientRow) -> Result<Self, Error> {
        let changes = row.changes;
        Ok(Client {
            id: row.id,
            organization_id: row.organization_id,
            destination_id: row.destination_id,
            orchestrator_id: row.orchestrator_id,
            label: row.label,
            permissions: permission_set(&changes.permissions)?,
            agent_key: row.agent_public_key,
            version: to_u64("client version", changes.version)?,
            status: changes.status,
            created_at: row.created_at,
            updated_at: changes.updated_at,
        })
    }
}

/// The changeable fields of a client ID.
#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = client_ids)]
pub(crate) struct ClientChanges {
    permissions: String,
    #[diesel(deserialize_as = Spelled, serialize_as = Spelled)]
    status: ClientStatus,
    version: i64,
    #[diesel(deserialize_as = At, serialize_as = At)]
    updated_at: DateTime<Utc>,
}

impl TryFrom<&Client> for ClientChanges {
    type Error = Error;
    fn try_from(client: &Client) -> Result<Self, Error> {
        Ok(Self {
            permissions: permissions_text(&client.permissions),
            status: client.status,
            version: to_i64("client version", client.version)?,
            updated_at: client.updated_at,
        })
    }
}

pub(crate) fn metadata_text(metadata: &BTreeMap<String, String>) -> Result<String, Error> {
    serde_json::to_string(metadata)
        .map_err(|error| Error::Data(format!("metadata cannot be serialized: {error}")))
}

/// The stored metadata of the object `id`.
pub(crate) fn metadata_of(
    id: &impl std::fmt::Display,
    text: &str,
) -> Result<BTreeMap<String, String>, Error> {
    serde_json::from_str(text)
        .map_err(|error| Error::Data(format!("stored metadata of {id} is invalid: {error}")))
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

/// Saves a client ID's `changes`, provided its stored version is still `expected`; whether it
/// was.
pub(crate) async fn save_client<C: Dialect>(
    conn: &mut C,
    id: &str,
    expected: i64,
    changes: ClientChanges,
) -> QueryResult<bool> {
    let updated = conn
        .run(
            update(client_ids::table.find(id))
                .filter(client_ids::version.eq(expected))
                .set(changes),
        )
        .await?;
    Ok(updated > 0)
}

#[async_trait]
impl ClientStore for DbStore {
    async fn insert_client(&self, client: &Client, event: &Event) -> Result<(), StoreError> {
        let row = ClientRow::try_from(client)?;
        let outbox = Outbox::of(std::slice::from_ref(event))?;
        db_write!(self, outbox, |conn| {
            outbox
                .store_with(conn, insert_into(client_ids::table).values(row))
                .await?;
            Ok(())
        })
    }

    async fn client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        let id = id.to_string();
        db_first!(self, ClientRow, client_ids::table.find(&id))
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
                .first::<(ClientRow, Option<At>)>(conn)
                .await
                .optional()?;
            row.map(|(client, expires_at)| {
                Ok((Client::try_from(client)?, expires_at.map(DateTime::from)))
            })
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
        let status = status.map(ClientStatus::as_str);
        db_page!(self, page, client_ids, ClientRow, ClientId, |query| {
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
            if !save_client(conn, &id, expected, changes).await? {
                return Ok(false);
            }
            outbox.store(conn).await?;
            Ok(true)
        })
    }
}
