//! Organizations and API keys: their rows, the organization and key ports, and the queries
//! that read a key with the client ID it names.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::{insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::ids::{ClientId, DestinationId, KeyId, OrchestratorId, OrganizationId};
use mandate_domain::model::{ApiKey, Client, KeyOwner, Organization};
use mandate_domain::ports::{
    KeyStore, OrganizationFilter, OrganizationStore, Page, PageRequest, StoreError,
};

use crate::DbStore;
use crate::clients::ClientRow;
use crate::dialect::Dialect;
use crate::errors::Error;
use crate::page::{into_page, page_cursor, page_limit, sql_limit};
use crate::pool::{db_run, db_transaction};
use crate::rows::{parsed, to_naive, to_utc};
use crate::schema::{api_keys, client_ids, organizations};

/// The `api_keys.kind` of each owner.
pub(crate) const PLATFORM: &str = "platform";

pub(crate) const DESTINATION: &str = "destination";

pub(crate) const ORCHESTRATOR: &str = "orchestrator";

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = organizations, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct OrganizationRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) created_at: NaiveDateTime,
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
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct KeyRow {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) organization_id: Option<String>,
    pub(crate) destination_id: Option<String>,
    pub(crate) orchestrator_id: Option<String>,
    pub(crate) key_hash: String,
    pub(crate) prefix: String,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) last_used_at: Option<NaiveDateTime>,
    pub(crate) expires_at: Option<NaiveDateTime>,
    pub(crate) revoked_at: Option<NaiveDateTime>,
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

/// Narrows a boxed `api_keys` query to the keys of one owner. The table's check constraint
/// guarantees the owner columns not named here are null.
macro_rules! of_owner {
    ($query:expr, $owner:expr) => {
        match $owner {
            KeyOwner::Platform { organization_id } => $query
                .filter(api_keys::kind.eq(PLATFORM))
                .filter(api_keys::organization_id.eq(organization_id.as_str())),
            KeyOwner::Destination {
                organization_id,
                destination_id,
            } => $query
                .filter(api_keys::kind.eq(DESTINATION))
                .filter(api_keys::organization_id.eq(organization_id.as_str()))
                .filter(api_keys::destination_id.eq(destination_id.as_str())),
            KeyOwner::Orchestrator { orchestrator_id } => $query
                .filter(api_keys::kind.eq(ORCHESTRATOR))
                .filter(api_keys::orchestrator_id.eq(orchestrator_id.as_str())),
        }
    };
}

#[async_trait]
impl OrganizationStore for DbStore {
    async fn insert_organization(
        &self,
        organization: &Organization,
        platform_key: &ApiKey,
    ) -> Result<(), StoreError> {
        let organization = OrganizationRow::from(organization);
        let key = KeyRow::from(platform_key);
        db_transaction!(self, |conn| {
            insert_into(organizations::table)
                .values(&organization)
                .execute(conn)
                .await?;
            insert_into(api_keys::table)
                .values(&key)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    async fn organization(&self, id: &OrganizationId) -> Result<Option<Organization>, StoreError> {
        let id = id.to_string();
        db_run!(self, |conn| {
            let row = organizations::table
                .find(&id)
                .select(OrganizationRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(Organization::try_from).transpose()
        })
    }

    async fn list_organizations(
        &self,
        filter: &OrganizationFilter,
        page: &PageRequest,
    ) -> Result<Page<Organization>, StoreError> {
        let name = filter.name.clone();
        let limit = page_limit(page);
        let cursor = page_cursor(page, OrganizationId::parse);
        db_run!(self, |conn| {
            let mut query = organizations::table
                .select(OrganizationRow::as_select())
                .order(organizations::id.desc())
                .limit(sql_limit(limit + 1))
                .into_boxed();
            if let Some(name) = &name {
                query = query.filter(organizations::name.eq(name.as_str()));
            }
            if let Some(cursor) = &cursor {
                query = query.filter(organizations::id.lt(cursor.as_str()));
            }
            into_page(query.load(conn).await?, limit)
        })
    }
}

/// The key `$key` finds and the client ID `$client_id`, in one query. The join's condition
/// names the client ID alone, so a key comes back even when no such client ID exists.
macro_rules! key_with_client {
    ($key:expr, $client_id:expr) => {
        api_keys::table
            .left_join(client_ids::table.on(client_ids::id.eq($client_id)))
            .filter($key)
            .select((KeyRow::as_select(), Option::<ClientRow>::as_select()))
    };
}

/// A key and the client ID read with it, as the domain's types.
pub(crate) fn key_and_client(
    row: Option<(KeyRow, Option<ClientRow>)>,
) -> Result<Option<(ApiKey, Option<Client>)>, Error> {
    row.map(|(key, client)| {
        Ok((
            ApiKey::try_from(key)?,
            client.map(Client::try_from).transpose()?,
        ))
    })
    .transpose()
}

#[async_trait]
impl KeyStore for DbStore {
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let hash = hash.to_owned();
        db_run!(self, |conn| {
            let row = api_keys::table
                .filter(api_keys::key_hash.eq(&hash))
                .select(KeyRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(ApiKey::try_from).transpose()
        })
    }

    async fn key_with_client(
        &self,
        key_hash: &str,
        client_id: &ClientId,
    ) -> Result<Option<(ApiKey, Option<Client>)>, StoreError> {
        let hash = key_hash.to_owned();
        let client_id = client_id.to_string();
        db_run!(self, |conn| {
            key_and_client(
                key_with_client!(api_keys::key_hash.eq(&hash), &client_id)
                    .first(conn)
                    .await
                    .optional()?,
            )
        })
    }

    async fn key_by_id_with_client(
        &self,
        key_id: &KeyId,
        client_id: &ClientId,
    ) -> Result<Option<(ApiKey, Option<Client>)>, StoreError> {
        let key_id = key_id.to_string();
        let client_id = client_id.to_string();
        db_run!(self, |conn| {
            key_and_client(
                key_with_client!(api_keys::id.eq(&key_id), &client_id)
                    .first(conn)
                    .await
                    .optional()?,
            )
        })
    }

    async fn insert_key(
        &self,
        key: &ApiKey,
        max_active: Option<usize>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row = KeyRow::from(key);
        let owner = key.owner.clone();
        let now = to_naive(now);
        let max_active = max_active.map(|max| i64::try_from(max).unwrap_or(i64::MAX));
        db_transaction!(self, |conn| {
            if let Some(max_active) = max_active {
                // Held until commit: a concurrent insert for this owner counts after us.
                conn.lock_owner(&owner).await?;
                let active: i64 =
                    of_owner!(api_keys::table.select(count_star()).into_boxed(), &owner)
                        .filter(api_keys::revoked_at.is_null())
                        .filter(
                            api_keys::expires_at
                                .is_null()
                                .or(api_keys::expires_at.gt(now)),
                        )
                        .get_result(conn)
                        .await?;
                if active >= max_active {
                    return Ok(false);
                }
            }
            insert_into(api_keys::table)
                .values(&row)
                .execute(conn)
                .await?;
            Ok(true)
        })
    }

    async fn keys_of(&self, owner: &KeyOwner) -> Result<Vec<ApiKey>, StoreError> {
        let owner = owner.clone();
        db_run!(self, |conn| {
            let rows = of_owner!(
                api_keys::table.select(KeyRow::as_select()).into_boxed(),
                &owner
            )
            .order(api_keys::id.desc())
            .load(conn)
            .await?;
            rows.into_iter()
                .map(ApiKey::try_from)
                .collect::<Result<Vec<_>, Error>>()
        })
    }

    async fn revoke_key(
        &self,
        owner: &KeyOwner,
        id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<Option<ApiKey>, StoreError> {
        let owner = owner.clone();
        let id = id.to_string();
        let at = to_naive(at);
        db_transaction!(self, |conn| {
            let owned = of_owner!(api_keys::table.select(api_keys::id).into_boxed(), &owner)
                .filter(api_keys::id.eq(&id))
                .first::<String>(conn)
                .await
                .optional()?;
            if owned.is_none() {
                return Ok(None);
            }
            // Only the first revocation sets the time.
            update(api_keys::table.find(&id))
                .filter(api_keys::revoked_at.is_null())
                .set(api_keys::revoked_at.eq(at))
                .execute(conn)
                .await?;
            let row = api_keys::table
                .find(&id)
                .select(KeyRow::as_select())
                .first(conn)
                .await?;
            ApiKey::try_from(row).map(Some)
        })
    }

    async fn touch_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.to_string();
        let at = to_naive(at);
        db_run!(self, |conn| {
            // Never moves backwards when touches race.
            update(api_keys::table.find(&id))
                .filter(
                    api_keys::last_used_at
                        .is_null()
                        .or(api_keys::last_used_at.lt(at)),
                )
                .set(api_keys::last_used_at.eq(at))
                .execute(conn)
                .await?;
            Ok(())
        })
    }
}
