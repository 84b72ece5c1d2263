//! The domain's ports on [`DbStore`]. Inputs become owned rows before a query runs, because
//! every operation runs as its own task (see `pool::detached`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::{delete, insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::customers::{Customer, Email};
use mandate_domain::events::Event;
use mandate_domain::ids::{
    ClientId, CustomerId, DestinationId, EventId, KeyId, OrchestratorId, OrganizationId, RequestId,
};
use mandate_domain::model::{
    ApiKey, Client, ClientStatus, Destination, KeyOwner, Orchestrator, Organization,
};
use mandate_domain::payments::{Direction, Payment, PaymentLink, PaymentRequest};
use mandate_domain::policy::{ClientScope, DestinationScope, RequestScope};
use mandate_domain::ports::{
    ClientStore, CustomerStore, DestinationStore, EventStore, Health, KeyStore, OrchestratorStore,
    OrganizationStore, Page, PageRequest, RequestFilter, RequestStore, StoreError,
};
use mandate_domain::values::Slug;
use mandate_domain::webhooks::EventScope;

use crate::DbStore;
use crate::feed::{FeedFilter, FeedPredicate};
use crate::outbox::{Outbox, db_write};
use crate::pool::{Dialect, Error, IndexPredicate, db_run, db_transaction};
use crate::rows::{
    ClientChanges, ClientRow, CustomerChanges, CustomerRow, DESTINATION, DestinationChanges,
    DestinationRow, EventRow, KeyRow, ORCHESTRATOR, OrchestratorRow, OrganizationRow, PLATFORM,
    PaymentLinkRow, PaymentRow, RequestChanges, RequestRow, client_status_str, to_naive, to_utc,
};
use crate::schema::{
    api_keys, claims, client_ids, customers, destinations, events, orchestrators, organizations,
    payment_links, payment_requests, payments,
};

/// The page size asked for, within the allowed range.
pub(crate) fn page_limit(page: &PageRequest) -> usize {
    page.limit.clamp(1, PageRequest::MAX_LIMIT) as usize
}

/// The cursor in the canonical (upper-case) spelling stored ids compare in; a cursor that is
/// no id of the kind is compared as given.
pub(crate) fn page_cursor<T: std::fmt::Display, E>(
    page: &PageRequest,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Option<String> {
    page.starting_after
        .as_deref()
        .map(|cursor| parse(cursor).map_or_else(|_| cursor.to_owned(), |id| id.to_string()))
}

pub(crate) fn empty_page<T>() -> Page<T> {
    Page::of(Vec::new(), false)
}

/// A page from `limit + 1` rows fetched newest first: the extra row only tells that more follow.
pub(crate) fn into_page<R, T>(mut rows: Vec<R>, limit: usize) -> Result<Page<T>, Error>
where
    T: TryFrom<R, Error = Error>,
{
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let data = rows
        .into_iter()
        .map(T::try_from)
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Page::of(data, has_more))
}

/// Like [`into_page`], but a row that cannot be read is left out of `data`, named (by `id`)
/// in `unreadable` and logged as an error, instead of failing the whole page.
pub(crate) fn into_page_of_readable<R, T>(
    mut rows: Vec<R>,
    limit: usize,
    id: impl Fn(&R) -> String,
) -> Page<T>
where
    T: TryFrom<R, Error = Error>,
{
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let mut page = Page::of(Vec::with_capacity(rows.len()), has_more);
    for row in rows {
        let row_id = id(&row);
        match T::try_from(row) {
            Ok(item) => page.data.push(item),
            Err(error) => {
                tracing::error!(id = %row_id, error = %error, "a stored row cannot be read; it is left out of the list");
                page.unreadable.push(row_id);
            }
        }
    }
    page
}

pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
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

    async fn orchestrator_by_slug(&self, slug: &Slug) -> Result<Option<Orchestrator>, StoreError> {
        let slug = slug.to_string();
        db_run!(self, |conn| {
            let row = orchestrators::table
                .filter(orchestrators::slug.eq(&slug))
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

    async fn destination_by_slug(&self, slug: &Slug) -> Result<Option<Destination>, StoreError> {
        let slug = slug.to_string();
        db_run!(self, |conn| {
            let row = destinations::table
                .filter(destinations::slug.eq(&slug))
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
            DestinationScope::Nothing => return Ok(empty_page()),
        };
        let limit = page_limit(page);
        let cursor = page_cursor(page, DestinationId::parse);
        db_run!(self, |conn| {
            let mut query = destinations::table
                .select(DestinationRow::as_select())
                .order(destinations::id.desc())
                .limit(sql_limit(limit + 1))
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
            into_page(query.load(conn).await?, limit)
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
fn key_and_client(
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

/// A version as stored; one past `i64::MAX` can match no row, so it fails instead.
fn version_column(version: u64) -> Result<i64, Error> {
    i64::try_from(version).map_err(|_| Error::Data(format!("version {version} is out of range")))
}

/// The SQL form of a [`RequestScope`] that can match something.
enum RequestScopeFilter {
    Organization(String),
    Destination(String),
    Client {
        client_id: String,
        destination_id: String,
        read_incoming: bool,
        read_outgoing: bool,
    },
}

const INCOMING: &str = "incoming";
const OUTGOING: &str = "outgoing";

/// The pending statuses, spelled exactly as in the partial index's predicate.
const PENDING: IndexPredicate = IndexPredicate("status IN ('open', 'partially_paid')");

#[async_trait]
impl RequestStore for DbStore {
    async fn insert_request(
        &self,
        request: &PaymentRequest,
        event: &Event,
    ) -> Result<(), StoreError> {
        let row = RequestRow::try_from(request)?;
        let outbox = Outbox::of(std::slice::from_ref(event))?;
        db_write!(self, outbox, |conn| {
            outbox
                .store_with(conn, insert_into(payment_requests::table).values(&row))
                .await?;
            Ok(())
        })
    }

    async fn request(&self, id: &RequestId) -> Result<Option<PaymentRequest>, StoreError> {
        let id = id.to_string();
        db_run!(self, |conn| {
            let row = payment_requests::table
                .find(&id)
                .select(RequestRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(PaymentRequest::try_from).transpose()
        })
    }

    async fn list_requests(
        &self,
        scope: &RequestScope,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<PaymentRequest>, StoreError> {
        let scope = match scope {
            RequestScope::Organization(id) => RequestScopeFilter::Organization(id.to_string()),
            RequestScope::Destination(id) => RequestScopeFilter::Destination(id.to_string()),
            RequestScope::Client {
                client_id,
                destination_id,
                read_incoming,
                read_outgoing,
            } => RequestScopeFilter::Client {
                client_id: client_id.to_string(),
                destination_id: destination_id.to_string(),
                read_incoming: *read_incoming,
                read_outgoing: *read_outgoing,
            },
            RequestScope::Nothing => return Ok(empty_page()),
        };
        let direction = filter.direction.map(Direction::as_str);
        let status = filter.status.map(|status| status.as_str());
        let destination_id = filter.destination_id.as_ref().map(ToString::to_string);
        let customer_id = filter.customer_id.clone();
        let limit = page_limit(page);
        let cursor = page_cursor(page, RequestId::parse);
        db_run!(self, |conn| {
            let mut query = payment_requests::table
                .select(RequestRow::as_select())
                .order(payment_requests::id.desc())
                .limit(sql_limit(limit + 1))
                .into_boxed();
            // `RequestScope::contains`, in SQL.
            query = match &scope {
                RequestScopeFilter::Organization(id) => {
                    query.filter(payment_requests::organization_id.eq(id.as_str()))
                }
                RequestScopeFilter::Destination(id) => {
                    query.filter(payment_requests::destination_id.eq(id.as_str()))
                }
                RequestScopeFilter::Client {
                    client_id,
                    destination_id,
                    read_incoming,
                    read_outgoing,
                } => {
                    let query =
                        query.filter(payment_requests::destination_id.eq(destination_id.as_str()));
                    let own = payment_requests::client_id.eq(client_id.as_str());
                    match (read_incoming, read_outgoing) {
                        // Both directions readable: every request of the destination (the
                        // column's check constraint allows no third direction).
                        (true, true) => query,
                        (true, false) => {
                            query.filter(own.or(payment_requests::direction.eq(INCOMING)))
                        }
                        (false, true) => {
                            query.filter(own.or(payment_requests::direction.eq(OUTGOING)))
                        }
                        (false, false) => query.filter(own),
                    }
                }
            };
            if let Some(direction) = direction {
                query = query.filter(payment_requests::direction.eq(direction));
            }
            if let Some(status) = status {
                query = query.filter(payment_requests::status.eq(status));
            }
            if let Some(destination_id) = &destination_id {
                query = query.filter(payment_requests::destination_id.eq(destination_id.as_str()));
            }
            if let Some(customer_id) = &customer_id {
                query = query.filter(payment_requests::customer_id.eq(customer_id.as_str()));
            }
            if let Some(cursor) = &cursor {
                query = query.filter(payment_requests::id.lt(cursor.as_str()));
            }
            // One unreadable request fails its own reads, not every list it is in.
            let rows: Vec<RequestRow> = query.load(conn).await?;
            Ok(into_page_of_readable(rows, limit, |row| row.id.clone()))
        })
    }

    async fn update_request(
        &self,
        request: &PaymentRequest,
        expected_version: u64,
        payment: Option<&Payment>,
        event: &Event,
    ) -> Result<bool, StoreError> {
        let id = request.id.to_string();
        let changes = RequestChanges::try_from(request)?;
        let expected = version_column(expected_version)?;
        let payment = payment.map(PaymentRow::from);
        let outbox = Outbox::of(std::slice::from_ref(event))?;
        db_write!(self, outbox, |conn| {
            let updated = update(payment_requests::table.find(&id))
                .filter(payment_requests::version.eq(expected))
                .set(&changes)
                .execute(conn)
                .await?;
            if updated == 0 {
                return Ok(false);
            }
            if let Some(payment) = &payment {
                insert_into(payments::table)
                    .values(payment)
                    .execute(conn)
                    .await?;
            }
            outbox.store(conn).await?;
            Ok(true)
        })
    }

    async fn requests_due_for_expiry(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PaymentRequest>, StoreError> {
        let now = to_naive(now);
        let limit = i64::from(limit);
        db_run!(self, |conn| {
            let rows = payment_requests::table
                .filter(PENDING)
                .filter(payment_requests::expires_at.le(now))
                .order((
                    payment_requests::expires_at.asc(),
                    payment_requests::id.asc(),
                ))
                .limit(limit)
                .select(RequestRow::as_select())
                .load(conn)
                .await?;
            rows.into_iter()
                .map(PaymentRequest::try_from)
                .collect::<Result<Vec<_>, Error>>()
        })
    }

    async fn payments_of(&self, request_id: &RequestId) -> Result<Vec<Payment>, StoreError> {
        let request_id = request_id.to_string();
        db_run!(self, |conn| {
            let rows = payments::table
                .filter(payments::request_id.eq(&request_id))
                .order(payments::id.asc())
                .select(PaymentRow::as_select())
                .load(conn)
                .await?;
            rows.into_iter()
                .map(Payment::try_from)
                .collect::<Result<Vec<_>, Error>>()
        })
    }

    async fn insert_payment_link(&self, link: &PaymentLink) -> Result<(), StoreError> {
        let row = PaymentLinkRow::from(link);
        db_run!(self, |conn| {
            insert_into(payment_links::table)
                .values(&row)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    async fn payment_link_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<PaymentLink>, StoreError> {
        let hash = hash.to_owned();
        db_run!(self, |conn| {
            let row = payment_links::table
                .filter(payment_links::token_hash.eq(&hash))
                .select(PaymentLinkRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(PaymentLink::try_from).transpose()
        })
    }
}

#[async_trait]
impl EventStore for DbStore {
    async fn events(&self, page: &PageRequest) -> Result<Page<Event>, StoreError> {
        let limit = page_limit(page);
        let cursor = page_cursor(page, EventId::parse);
        db_run!(self, |conn| {
            let mut query = events::table
                .select(EventRow::as_select())
                .order(events::id.desc())
                .limit(sql_limit(limit + 1))
                .into_boxed();
            if let Some(cursor) = &cursor {
                query = query.filter(events::id.lt(cursor.as_str()));
            }
            into_page(query.load(conn).await?, limit)
        })
    }

    async fn list_events(
        &self,
        scope: &EventScope,
        page: &PageRequest,
    ) -> Result<Page<Event>, StoreError> {
        let Some(filter) = FeedFilter::new(scope) else {
            return Ok(empty_page());
        };
        let limit = page_limit(page);
        let cursor = page_cursor(page, EventId::parse);
        db_run!(self, |conn| {
            // `EventScope::contains`, in SQL.
            let mut query = events::table
                .select(EventRow::as_select())
                .order(events::id.desc())
                .limit(sql_limit(limit + 1))
                .into_boxed()
                .filter(conn.feed_predicate(&filter));
            if let Some(cursor) = &cursor {
                query = query.filter(events::id.lt(cursor.as_str()));
            }
            into_page(query.load(conn).await?, limit)
        })
    }

    async fn event(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        let id = id.to_string();
        db_run!(self, |conn| {
            let row = events::table
                .find(&id)
                .select(EventRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(Event::try_from).transpose()
        })
    }
}

#[async_trait]
impl CustomerStore for DbStore {
    async fn insert_customer(&self, customer: &Customer, event: &Event) -> Result<(), StoreError> {
        let row = CustomerRow::try_from(customer)?;
        let outbox = Outbox::of(std::slice::from_ref(event))?;
        // A taken email breaks the unique constraint: the error rolls back the event too.
        db_write!(self, outbox, |conn| {
            insert_into(customers::table)
                .values(&row)
                .execute(conn)
                .await?;
            outbox.store(conn).await?;
            Ok(())
        })
    }

    async fn customer(&self, id: &CustomerId) -> Result<Option<Customer>, StoreError> {
        let id = id.to_string();
        db_run!(self, |conn| {
            let row = customers::table
                .find(&id)
                .select(CustomerRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(Customer::try_from).transpose()
        })
    }

    async fn customer_by_email(
        &self,
        organization_id: &OrganizationId,
        email: &Email,
    ) -> Result<Option<Customer>, StoreError> {
        let organization_id = organization_id.to_string();
        let normalized = email.normalized();
        db_run!(self, |conn| {
            let row = customers::table
                .filter(customers::organization_id.eq(&organization_id))
                .filter(customers::email_normalized.eq(&normalized))
                .select(CustomerRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(Customer::try_from).transpose()
        })
    }

    async fn list_customers(
        &self,
        organization_id: &OrganizationId,
        email: Option<&Email>,
        page: &PageRequest,
    ) -> Result<Page<Customer>, StoreError> {
        let organization_id = organization_id.to_string();
        let normalized = email.map(Email::normalized);
        let limit = page_limit(page);
        let cursor = page_cursor(page, CustomerId::parse);
        db_run!(self, |conn| {
            let mut query = customers::table
                .filter(customers::organization_id.eq(organization_id.as_str()))
                .select(CustomerRow::as_select())
                .order(customers::id.desc())
                .limit(sql_limit(limit + 1))
                .into_boxed();
            if let Some(normalized) = &normalized {
                query = query.filter(customers::email_normalized.eq(normalized.as_str()));
            }
            if let Some(cursor) = &cursor {
                query = query.filter(customers::id.lt(cursor.as_str()));
            }
            into_page(query.load(conn).await?, limit)
        })
    }

    async fn update_customer(&self, customer: &Customer, event: &Event) -> Result<(), StoreError> {
        let id = customer.id.to_string();
        let organization_id = customer.organization_id.to_string();
        let changes = CustomerChanges::try_from(customer)?;
        let outbox = Outbox::of(std::slice::from_ref(event))?;
        db_write!(self, outbox, |conn| {
            let updated = update(customers::table.find(&id))
                .filter(customers::organization_id.eq(&organization_id))
                .set(&changes)
                .execute(conn)
                .await?;
            if updated == 0 {
                return Err(Error::Data(format!("customer {id} does not exist")));
            }
            outbox.store(conn).await?;
            Ok(())
        })
    }

    async fn delete_customer(&self, id: &CustomerId, event: &Event) -> Result<bool, StoreError> {
        let id = id.to_string();
        let outbox = Outbox::of(std::slice::from_ref(event))?;
        db_write!(self, outbox, |conn| {
            let deleted = delete(customers::table.find(&id)).execute(conn).await?;
            if deleted == 0 {
                return Ok(false);
            }
            outbox.store(conn).await?;
            Ok(true)
        })
    }
}

#[async_trait]
impl Health for DbStore {
    async fn ping(&self) -> Result<(), StoreError> {
        crate::pool::ping(self.pools.clone(), self.acquire_timeout).await
    }
}
