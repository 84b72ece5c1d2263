//! Organizations and API keys: their rows, the organization and key ports, and the queries
//! statement that reads a key with the client ID and the payment request a call names.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::{insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::ids::{
    ClientId, DestinationId, KeyId, OrchestratorId, OrganizationId, RequestId,
};
use mandate_domain::model::{ApiKey, Client, KeyOwner, Organization};
use mandate_domain::payments::PaymentRequest;
use mandate_domain::ports::{
    KeyRead, KeyRef, KeyStore, OrganizationFilter, OrganizationStore, Page, PageRequest, StoreError,
};

use crate::DbStore;
use crate::clients::ClientRow;
use crate::dialect::{Dialect, Row};
use crate::errors::Error;
use crate::page::db_page;
use crate::pool::{db_first, db_run, db_transaction};
use crate::requests::RequestRow;
use crate::rows::{At, Maybe, same_fields};
use crate::schema::{api_keys, client_ids, organizations, payment_requests};

/// The `api_keys.kind` of each owner.
pub(crate) const PLATFORM: &str = "platform";

pub(crate) const DESTINATION: &str = "destination";

pub(crate) const ORCHESTRATOR: &str = "orchestrator";

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = organizations, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct OrganizationRow {
    #[diesel(deserialize_as = String, serialize_as = String)]
    id: OrganizationId,
    name: String,
    #[diesel(deserialize_as = At, serialize_as = At)]
    created_at: DateTime<Utc>,
}

same_fields!(
    Organization,
    OrganizationRow {
        id,
        name,
        created_at
    }
);

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct KeyRow {
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub(crate) id: KeyId,
    pub(crate) kind: String,
    #[diesel(deserialize_as = Maybe<String>, serialize_as = Maybe<String>)]
    pub(crate) organization_id: Option<OrganizationId>,
    #[diesel(deserialize_as = Maybe<String>, serialize_as = Maybe<String>)]
    pub(crate) destination_id: Option<DestinationId>,
    #[diesel(deserialize_as = Maybe<String>, serialize_as = Maybe<String>)]
    pub(crate) orchestrator_id: Option<OrchestratorId>,
    pub(crate) key_hash: String,
    pub(crate) prefix: String,
    #[diesel(deserialize_as = At, serialize_as = At)]
    pub(crate) created_at: DateTime<Utc>,
    #[diesel(deserialize_as = Maybe<At>, serialize_as = Maybe<At>)]
    pub(crate) last_used_at: Option<DateTime<Utc>>,
    #[diesel(deserialize_as = Maybe<At>, serialize_as = Maybe<At>)]
    pub(crate) expires_at: Option<DateTime<Utc>>,
    #[diesel(deserialize_as = Maybe<At>, serialize_as = Maybe<At>)]
    pub(crate) revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKey> for KeyRow {
    fn from(key: &ApiKey) -> Self {
        let (kind, organization_id, destination_id, orchestrator_id) = match &key.owner {
            KeyOwner::Platform { organization_id } => {
                (PLATFORM, Some(organization_id.clone()), None, None)
            }
            KeyOwner::Destination {
                organization_id,
                destination_id,
            } => (
                DESTINATION,
                Some(organization_id.clone()),
                Some(destination_id.clone()),
                None,
            ),
            KeyOwner::Orchestrator { orchestrator_id } => {
                (ORCHESTRATOR, None, None, Some(orchestrator_id.clone()))
            }
        };
        Self {
            id: key.id.clone(),
            kind: kind.to_owned(),
            organization_id,
            destination_id,
            orchestrator_id,
            key_hash: key.hash.clone(),
            prefix: key.prefix.clone(),
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
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
        let organization_id = || {
            row.organization_id
                .clone()
                .ok_or_else(|| missing("organization_id"))
        };
        let owner = match row.kind.as_str() {
            PLATFORM => KeyOwner::Platform {
                organization_id: organization_id()?,
            },
            DESTINATION => KeyOwner::Destination {
                organization_id: organization_id()?,
                destination_id: row
                    .destination_id
                    .clone()
                    .ok_or_else(|| missing("destination_id"))?,
            },
            ORCHESTRATOR => KeyOwner::Orchestrator {
                orchestrator_id: row
                    .orchestrator_id
                    .clone()
                    .ok_or_else(|| missing("orchestrator_id"))?,
            },
            other => {
                return Err(Error::Data(format!(
                    "stored key {} has unknown kind {other:?}",
                    row.id
                )));
            }
        };
        Ok(ApiKey {
            id: row.id,
            owner,
            hash: row.key_hash,
            prefix: row.prefix,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
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

/// The row of a key's owner, which concurrent key insertions for that owner lock in turn.
fn owner_row(owner: &KeyOwner) -> Row<'_> {
    match owner {
        KeyOwner::Platform { organization_id } => Row::Organization(organization_id.as_str()),
        KeyOwner::Destination { destination_id, .. } => Row::Destination(destination_id.as_str()),
        KeyOwner::Orchestrator { orchestrator_id } => Row::Orchestrator(orchestrator_id.as_str()),
    }
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
            conn.run(insert_into(organizations::table).values(organization))
                .await?;
            conn.run(insert_into(api_keys::table).values(key)).await?;
            Ok(())
        })
    }

    async fn organization(&self, id: &OrganizationId) -> Result<Option<Organization>, StoreError> {
        let id = id.to_string();
        db_first!(self, OrganizationRow, organizations::table.find(&id))
    }

    async fn list_organizations(
        &self,
        filter: &OrganizationFilter,
        page: &PageRequest,
    ) -> Result<Page<Organization>, StoreError> {
        let name = filter.name.clone();
        db_page!(
            self,
            page,
            organizations,
            OrganizationRow,
            OrganizationId,
            |query| {
                if let Some(name) = &name {
                    query = query.filter(organizations::name.eq(name.as_str()));
                }
            }
        )
    }
}

/// The key `$key` finds, with the client ID `$client_id` and the payment request
/// `$request_id` (each an `Option`), in one statement. Each join's condition names its id
/// alone, so a key comes back even when neither exists, and an id not asked for (`NULL`)
/// joins nothing.
macro_rules! key_read {
    ($key:expr, $client_id:expr, $request_id:expr) => {
        api_keys::table
            .left_join(client_ids::table.on(client_ids::id.nullable().eq($client_id)))
            .left_join(payment_requests::table.on(payment_requests::id.nullable().eq($request_id)))
            .filter($key)
            .select((
                KeyRow::as_select(),
                Option::<ClientRow>::as_select(),
                Option::<RequestRow>::as_select(),
            ))
    };
}

/// A key and what was read with it, as the domain's types.
fn key_read_of(
    row: Option<(KeyRow, Option<ClientRow>, Option<RequestRow>)>,
) -> Result<Option<KeyRead>, Error> {
    row.map(|(key, client, request)| {
        Ok(KeyRead {
            key: ApiKey::try_from(key)?,
            client: client.map(Client::try_from).transpose()?,
            request: request.map(PaymentRequest::try_from).transpose()?,
        })
    })
    .transpose()
}

/// A [`KeyRef`] owned, to move into the query's task.
enum KeyBy {
    Hash(String),
    Id(String),
}

#[async_trait]
impl KeyStore for DbStore {
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let hash = hash.to_owned();
        db_first!(
            self,
            KeyRow,
            api_keys::table.filter(api_keys::key_hash.eq(&hash))
        )
    }

    async fn key_read(
        &self,
        key: KeyRef<'_>,
        client_id: Option<&ClientId>,
        request_id: Option<&RequestId>,
    ) -> Result<Option<KeyRead>, StoreError> {
        let key = match key {
            KeyRef::Hash(hash) => KeyBy::Hash(hash.to_owned()),
            KeyRef::Id(id) => KeyBy::Id(id.to_string()),
        };
        let client_id = client_id.map(ToString::to_string);
        let request_id = request_id.map(ToString::to_string);
        db_run!(self, |conn| {
            let row = match &key {
                KeyBy::Hash(hash) => {
                    key_read!(
                        api_keys::key_hash.eq(hash),
                        client_id.clone(),
                        request_id.clone()
                    )
                    .first(conn)
                    .await
                }
                KeyBy::Id(id) => {
                    key_read!(api_keys::id.eq(id), client_id.clone(), request_id.clone())
                        .first(conn)
                        .await
                }
            };
            key_read_of(row.optional()?)
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
        let now = At::from(now);
        let max_active = max_active.map(|max| i64::try_from(max).unwrap_or(i64::MAX));
        db_transaction!(self, |conn| {
            if let Some(max_active) = max_active {
                // Held until commit: a concurrent insert for this owner counts after us.
                conn.lock_row(owner_row(&owner)).await?;
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
            conn.run(insert_into(api_keys::table).values(row)).await?;
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
        let at = At::from(at);
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
            conn.run(
                update(api_keys::table.find(&id))
                    .filter(api_keys::revoked_at.is_null())
                    .set(api_keys::revoked_at.eq(at)),
            )
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
        let at = At::from(at);
        db_run!(self, |conn| {
            // Never moves backwards when touches race.
            conn.run(
                update(api_keys::table.find(&id))
                    .filter(
                        api_keys::last_used_at
                            .is_null()
                            .or(api_keys::last_used_at.lt(at)),
                    )
                    .set(api_keys::last_used_at.eq(at)),
            )
            .await?;
            Ok(())
        })
    }
}
