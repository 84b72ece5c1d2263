//! Payment requests, their payments and payment links: rows, port and scoped lists.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::{insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::events::Event;
use mandate_domain::ids::{
    ClientId, DestinationId, OrganizationId, PaymentId, PaymentLinkId, RequestId,
};
use mandate_domain::payments::{Direction, Payment, PaymentLink, PaymentRequest, RequestStatus};
use mandate_domain::policy::RequestScope;
use mandate_domain::ports::{Page, PageRequest, RequestFilter, RequestStore, StoreError};
use mandate_domain::values::{Amount, Currency, Total};

use crate::DbStore;
use crate::clients::{metadata_of, metadata_text};
use crate::dialect::Dialect;
use crate::errors::Error;
use crate::outbox::{Outbox, db_write};
use crate::page::{all, empty_page, into_page_of_readable, page_cursor, page_limit, sql_limit};
use crate::pool::{db_first, db_run};
use crate::rows::{At, Maybe, Readable, Spelled, same_fields, to_i64, to_u64};
use crate::schema::{payment_links, payment_requests, payments};
use crate::sql::IndexPredicate;

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = payment_requests, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct RequestRow {
    #[diesel(deserialize_as = String, serialize_as = String)]
    id: RequestId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    organization_id: OrganizationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    destination_id: DestinationId,
    #[diesel(deserialize_as = Spelled, serialize_as = Spelled)]
    direction: Direction,
    #[diesel(deserialize_as = String, serialize_as = String)]
    amount: Amount,
    #[diesel(deserialize_as = String, serialize_as = String)]
    currency: Currency,
    #[diesel(deserialize_as = String, serialize_as = String)]
    amount_paid: Total,
    #[diesel(deserialize_as = Spelled, serialize_as = Spelled)]
    status: RequestStatus,
    customer_id: Option<String>,
    reference: Option<String>,
    description: Option<String>,
    #[diesel(deserialize_as = Maybe<At>, serialize_as = Maybe<At>)]
    due_at: Option<DateTime<Utc>>,
    #[diesel(deserialize_as = Maybe<At>, serialize_as = Maybe<At>)]
    expires_at: Option<DateTime<Utc>>,
    metadata: String,
    created_by: String,
    #[diesel(deserialize_as = Maybe<String>, serialize_as = Maybe<String>)]
    client_id: Option<ClientId>,
    version: i64,
    #[diesel(deserialize_as = At, serialize_as = At)]
    created_at: DateTime<Utc>,
    #[diesel(deserialize_as = At, serialize_as = At)]
    updated_at: DateTime<Utc>,
}

impl TryFrom<&PaymentRequest> for RequestRow {
    type Error = Error;
    fn try_from(request: &PaymentRequest) -> Result<Self, Error> {
        Ok(Self {
            id: request.id.clone(),
            organization_id: request.organization_id.clone(),
            destination_id: request.destination_id.clone(),
            direction: request.direction,
            amount: request.amount,
            currency: request.currency.clone(),
            amount_paid: request.amount_paid,
            status: request.status,
            customer_id: request.customer_id.clone(),
            reference: request.reference.clone(),
            description: request.description.clone(),
            due_at: request.due_at,
            expires_at: request.expires_at,
            metadata: metadata_text(&request.metadata)?,
            created_by: request.created_by.clone(),
            client_id: request.client_id.clone(),
            version: to_i64("request version", request.version)?,
            created_at: request.created_at,
            updated_at: request.updated_at,
        })
    }
}

impl TryFrom<RequestRow> for PaymentRequest {
    type Error = Error;
    fn try_from(row: RequestRow) -> Result<Self, Error> {
        Ok(PaymentRequest {
            metadata: metadata_of(&row.id, &row.metadata)?,
            version: to_u64("request version", row.version)?,
            id: row.id,
            organization_id: row.organization_id,
            destination_id: row.destination_id,
            direction: row.direction,
            amount: row.amount,
            currency: row.currency,
            amount_paid: row.amount_paid,
            status: row.status,
            customer_id: row.customer_id,
            reference: row.reference,
            description: row.description,
            due_at: row.due_at,
            expires_at: row.expires_at,
            created_by: row.created_by,
            client_id: row.client_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// The changeable fields of a payment request. (Not embedded in [`RequestRow`]: a list reads
/// its rows as [`Readable`], which needs every column converted as the row is built.)
#[derive(Debug, AsChangeset)]
#[diesel(table_name = payment_requests)]
pub(crate) struct RequestChanges {
    #[diesel(serialize_as = String)]
    amount_paid: Total,
    #[diesel(serialize_as = Spelled)]
    status: RequestStatus,
    version: i64,
    #[diesel(serialize_as = At)]
    updated_at: DateTime<Utc>,
}

impl TryFrom<&PaymentRequest> for RequestChanges {
    type Error = Error;
    fn try_from(request: &PaymentRequest) -> Result<Self, Error> {
        Ok(Self {
            amount_paid: request.amount_paid,
            status: request.status,
            version: to_i64("request version", request.version)?,
            updated_at: request.updated_at,
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct PaymentRow {
    #[diesel(deserialize_as = String, serialize_as = String)]
    id: PaymentId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    organization_id: OrganizationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    destination_id: DestinationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    request_id: RequestId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    amount: Amount,
    reference: String,
    #[diesel(deserialize_as = At, serialize_as = At)]
    paid_at: DateTime<Utc>,
    created_by: String,
    #[diesel(deserialize_as = At, serialize_as = At)]
    created_at: DateTime<Utc>,
}

same_fields!(
    Payment,
    PaymentRow {
        id,
        organization_id,
        destination_id,
        request_id,
        amount,
        reference,
        paid_at,
        created_by,
        created_at,
    }
);

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = payment_links, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct PaymentLinkRow {
    #[diesel(deserialize_as = String, serialize_as = String)]
    id: PaymentLinkId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    organization_id: OrganizationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    destination_id: DestinationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    request_id: RequestId,
    token_hash: String,
    #[diesel(deserialize_as = At, serialize_as = At)]
    expires_at: DateTime<Utc>,
    #[diesel(deserialize_as = At, serialize_as = At)]
    created_at: DateTime<Utc>,
}

same_fields!(
    PaymentLink,
    PaymentLinkRow {
        id,
        organization_id,
        destination_id,
        request_id,
        token_hash,
        expires_at,
        created_at,
    }
);

/// A version as stored; one past `i64::MAX` can match no row, so it fails instead.
pub(crate) fn version_column(version: u64) -> Result<i64, Error> {
    i64::try_from(version).map_err(|_| Error::Data(format!("version {version} is out of range")))
}

/// The SQL form of a [`RequestScope`] that can match something.
pub(crate) enum RequestScopeFilter {
    Organization(String),
    Destination(String),
    Client {
        client_id: String,
        destination_id: String,
        read_incoming: bool,
        read_outgoing: bool,
    },
}

pub(crate) const INCOMING: &str = "incoming";

pub(crate) const OUTGOING: &str = "outgoing";

/// The pending statuses, spelled exactly as in the partial index's predicate.
pub(crate) const PENDING: IndexPredicate = IndexPredicate("status IN ('open', 'partially_paid')");

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
                .store_with(conn, insert_into(payment_requests::table).values(row))
                .await?;
            Ok(())
        })
    }

    async fn request(&self, id: &RequestId) -> Result<Option<PaymentRequest>, StoreError> {
        let id = id.to_string();
        db_first!(self, RequestRow, payment_requests::table.find(&id))
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
                .select((payment_requests::id, Readable::<RequestRow>::as_select()))
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
            Ok(into_page_of_readable(query.load(conn).await?, limit))
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
            let updated = conn
                .run(
                    update(payment_requests::table.find(&id))
                        .filter(payment_requests::version.eq(expected))
                        .set(changes),
                )
                .await?;
            if updated == 0 {
                return Ok(false);
            }
            if let Some(payment) = payment {
                conn.run(insert_into(payments::table).values(payment))
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
        let now = At::from(now);
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
            all(rows)
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
            all(rows)
        })
    }

    async fn insert_payment_link(&self, link: &PaymentLink) -> Result<(), StoreError> {
        let row = PaymentLinkRow::from(link);
        db_run!(self, |conn| {
            conn.run(insert_into(payment_links::table).values(row))
                .await?;
            Ok(())
        })
    }

    async fn payment_link_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<PaymentLink>, StoreError> {
        let hash = hash.to_owned();
        db_first!(
            self,
            PaymentLinkRow,
            payment_links::table.filter(payment_links::token_hash.eq(&hash))
        )
    }
}
