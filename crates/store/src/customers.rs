//! Customers: their rows and port.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::{delete, insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::customers::{Customer, Email};
use mandate_domain::events::Event;
use mandate_domain::ids::{CustomerId, OrganizationId};
use mandate_domain::ports::{CustomerStore, Page, PageRequest, StoreError};

use crate::DbStore;
use crate::clients::metadata_text;
use crate::errors::Error;
use crate::outbox::{Outbox, db_write};
use crate::page::{into_page, page_cursor, page_limit, sql_limit};
use crate::pool::db_run;
use crate::rows::{optional, parsed, to_naive, to_utc};
use crate::schema::customers;

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = customers, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct CustomerRow {
    pub(crate) id: String,
    pub(crate) organization_id: String,
    pub(crate) email: Option<String>,
    pub(crate) email_normalized: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) metadata: String,
    pub(crate) created_by: String,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) updated_at: NaiveDateTime,
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
    pub(crate) email: Option<String>,
    pub(crate) email_normalized: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) metadata: String,
    pub(crate) updated_at: NaiveDateTime,
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
