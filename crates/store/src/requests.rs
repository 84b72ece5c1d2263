//! Payment requests, their payments and payment links: rows, port and scoped lists.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
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
use crate::clients::metadata_text;
use crate::errors::Error;
use crate::outbox::{Outbox, db_write};
use crate::page::{empty_page, into_page_of_readable, page_cursor, page_limit, sql_limit};
use crate::pool::db_run;
use crate::rows::{known, optional, parsed, to_i64, to_naive, to_u64, to_utc};
use crate::schema::{payment_links, payment_requests, payments};
use crate::sql::IndexPredicate;

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = payment_requests, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct RequestRow {
    pub(crate) id: String,
    pub(crate) organization_id: String,
    pub(crate) destination_id: String,
    pub(crate) direction: String,
    pub(crate) amount: String,
    pub(crate) currency: String,
    pub(crate) amount_paid: String,
    pub(crate) status: String,
    pub(crate) customer_id: Option<String>,
    pub(crate) reference: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) due_at: Option<NaiveDateTime>,
    pub(crate) expires_at: Option<NaiveDateTime>,
    pub(crate) metadata: String,
    pub(crate) created_by: String,
    pub(crate) client_id: Option<String>,
    pub(crate) version: i64,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) updated_at: NaiveDateTime,
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
    pub(crate) amount_paid: String,
    pub(crate) status: String,
    pub(crate) version: i64,
    pub(crate) updated_at: NaiveDateTime,
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
    pub(crate) id: String,
    pub(crate) organization_id: String,
    pub(crate) destination_id: String,
    pub(crate) request_id: String,
    pub(crate) amount: String,
    pub(crate) reference: String,
    pub(crate) paid_at: NaiveDateTime,
    pub(crate) created_by: String,
    pub(crate) created_at: NaiveDateTime,
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
    pub(crate) id: String,
    pub(crate) organization_id: String,
    pub(crate) destination_id: String,
    pub(crate) request_id: String,
    pub(crate) token_hash: String,
    pub(crate) expires_at: NaiveDateTime,
    pub(crate) created_at: NaiveDateTime,
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
