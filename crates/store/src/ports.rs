//! The domain's ports on [`DbStore`]. Inputs become owned rows before a query runs, because
//! every operation runs as its own task (see `pool::detached`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::{insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::ids::{DestinationId, KeyId, OrchestratorId, OrganizationId};
use mandate_domain::model::{ApiKey, Destination, KeyOwner, Orchestrator, Organization};
use mandate_domain::policy::DestinationScope;
use mandate_domain::ports::{
    DestinationStore, Health, KeyStore, OrchestratorStore, OrganizationStore, Page, PageRequest,
    StoreError,
};

use crate::DbStore;
use crate::pool::{Dialect, Error, db_run, db_transaction};
use crate::rows::{
    DESTINATION, DestinationChanges, DestinationRow, KeyRow, ORCHESTRATOR, OrchestratorRow,
    OrganizationRow, PLATFORM, to_naive,
};
use crate::schema::{api_keys, destinations, orchestrators, organizations};

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
}

#[async_trait]
impl OrchestratorStore for DbStore {
    async fn insert_orchestrator(
        &self,
        orchestrator: &Orchestrator,
        key: &ApiKey,
    ) -> Result<(), StoreError> {
        let orchestrator = OrchestratorRow::from(orchestrator);
        let key = KeyRow::from(key);
        db_transaction!(self, |conn| {
            insert_into(orchestrators::table)
                .values(&orchestrator)
                .execute(conn)
                .await?;
            insert_into(api_keys::table)
                .values(&key)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    async fn orchestrator(&self, id: &OrchestratorId) -> Result<Option<Orchestrator>, StoreError> {
        let id = id.to_string();
        db_run!(self, |conn| {
            let row = orchestrators::table
                .find(&id)
                .select(OrchestratorRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(Orchestrator::try_from).transpose()
        })
    }
}

/// The SQL form of a [`DestinationScope`] that can match something.
enum ScopeFilter {
    Organization(String),
    One(String),
}

#[async_trait]
impl DestinationStore for DbStore {
    async fn insert_destination(&self, destination: &Destination) -> Result<(), StoreError> {
        let row = DestinationRow::try_from(destination)?;
        db_run!(self, |conn| {
            insert_into(destinations::table)
                .values(&row)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    async fn destination(&self, id: &DestinationId) -> Result<Option<Destination>, StoreError> {
        let id = id.to_string();
        db_run!(self, |conn| {
            let row = destinations::table
                .find(&id)
                .select(DestinationRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(Destination::try_from).transpose()
        })
    }

    async fn list_destinations(
        &self,
        scope: &DestinationScope,
        page: &PageRequest,
    ) -> Result<Page<Destination>, StoreError> {
        let filter = match scope {
            DestinationScope::Organization(organization_id) => {
                ScopeFilter::Organization(organization_id.to_string())
            }
            DestinationScope::One(destination_id) => ScopeFilter::One(destination_id.to_string()),
            DestinationScope::Nothing => {
                return Ok(Page {
                    data: Vec::new(),
                    has_more: false,
                });
            }
        };
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT) as usize;
        // Ids compare in their canonical (upper-case) spelling.
        let cursor = page.starting_after.as_deref().map(|cursor| {
            DestinationId::parse(cursor).map_or_else(|_| cursor.to_owned(), |id| id.to_string())
        });
        db_run!(self, |conn| {
            let mut query = destinations::table
                .select(DestinationRow::as_select())
                .order(destinations::id.desc())
                .limit(limit as i64 + 1)
                .into_boxed();
            query = match &filter {
                ScopeFilter::Organization(organization_id) => {
                    query.filter(destinations::organization_id.eq(organization_id.as_str()))
                }
                ScopeFilter::One(destination_id) => {
                    query.filter(destinations::id.eq(destination_id.as_str()))
                }
            };
            if let Some(cursor) = &cursor {
                query = query.filter(destinations::id.lt(cursor.as_str()));
            }
            let mut rows = query.load(conn).await?;
            let has_more = rows.len() > limit;
            rows.truncate(limit);
            let data = rows
                .into_iter()
                .map(Destination::try_from)
                .collect::<Result<Vec<_>, Error>>()?;
            Ok(Page { data, has_more })
        })
    }

    async fn update_destination(&self, destination: &Destination) -> Result<(), StoreError> {
        let changes = DestinationChanges::try_from(destination)?;
        let id = destination.id.to_string();
        let organization_id = destination.organization_id.to_string();
        db_run!(self, |conn| {
            let updated = update(destinations::table.find(&id))
                .filter(destinations::organization_id.eq(&organization_id))
                .set(&changes)
                .execute(conn)
                .await?;
            if updated == 0 {
                return Err(Error::Data(format!("destination {id} does not exist")));
            }
            Ok(())
        })
    }
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

#[async_trait]
impl Health for DbStore {
    async fn ping(&self) -> Result<(), StoreError> {
        crate::pool::ping(self.pools.clone(), self.acquire_timeout).await
    }
}
