//! Customers: their rows and port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::{delete, insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::customers::{Customer, Email};
use mandate_domain::events::Event;
use mandate_domain::ids::{CustomerId, OrganizationId};
use mandate_domain::ports::{CustomerStore, Page, PageRequest, StoreError};

use crate::DbStore;
use crate::clients::{metadata_of, metadata_text};
use crate::dialect::Dialect;
use crate::errors::Error;
use crate::outbox::{Outbox, db_write};
use crate::page::db_page;
use crate::pool::db_first;
use crate::rows::{At, Maybe};
use crate::schema::customers;

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = customers, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct CustomerRow {
    #[diesel(deserialize_as = String, serialize_as = String)]
    id: CustomerId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    organization_id: OrganizationId,
    #[diesel(embed)]
    changes: CustomerChanges,
    created_by: String,
    #[diesel(deserialize_as = At, serialize_as = At)]
    created_at: DateTime<Utc>,
}

impl TryFrom<&Customer> for CustomerRow {
    type Error = Error;
    fn try_from(customer: &Customer) -> Result<Self, Error> {
        Ok(Self {
            id: customer.id.clone(),
            organization_id: customer.organization_id.clone(),
            changes: CustomerChanges::try_from(customer)?,
            created_by: customer.created_by.clone(),
            created_at: customer.created_at,
        })
    }
}

impl TryFrom<CustomerRow> for Customer {
    type Error = Error;
    fn try_from(row: CustomerRow) -> Result<Self, Error> {
        let changes = row.changes;
        Ok(Customer {
            metadata: metadata_of(&row.id, &changes.metadata)?,
            id: row.id,
            organization_id: row.organization_id,
            email: changes.email,
            name: changes.name,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: changes.updated_at,
        })
    }
}

/// The changeable fields of a customer; `None` clears the email or the name.
#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = customers, treat_none_as_null = true)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct CustomerChanges {
    #[diesel(deserialize_as = Maybe<String>, serialize_as = Maybe<String>)]
    email: Option<Email>,
    email_normalized: Option<String>,
    name: Option<String>,
    metadata: String,
    #[diesel(deserialize_as = At, serialize_as = At)]
    updated_at: DateTime<Utc>,
}

impl TryFrom<&Customer> for CustomerChanges {
    type Error = Error;
    fn try_from(customer: &Customer) -> Result<Self, Error> {
        Ok(Self {
            email: customer.email.clone(),
            email_normalized: customer.email.as_ref().map(Email::normalized),
            name: customer.name.clone(),
            metadata: metadata_text(&customer.metadata)?,
            updated_at: customer.updated_at,
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
            outbox
                .store_with(conn, insert_into(customers::table).values(row))
                .await?;
            Ok(())
        })
    }

    async fn customer(&self, id: &CustomerId) -> Result<Option<Customer>, StoreError> {
        let id = id.to_string();
        db_first!(self, CustomerRow, customers::table.find(&id))
    }

    async fn customer_by_email(
        &self,
        organization_id: &OrganizationId,
        email: &Email,
    ) -> Result<Option<Customer>, StoreError> {
        let organization_id = organization_id.to_string();
        let normalized = email.normalized();
        db_first!(
            self,
            CustomerRow,
            customers::table
                .filter(customers::organization_id.eq(&organization_id))
                .filter(customers::email_normalized.eq(&normalized))
        )
    }

    async fn list_customers(
        &self,
        organization_id: &OrganizationId,
        email: Option<&Email>,
        page: &PageRequest,
    ) -> Result<Page<Customer>, StoreError> {
        let organization_id = organization_id.to_string();
        let normalized = email.map(Email::normalized);
        db_page!(self, page, customers, CustomerRow, CustomerId, |query| {
            query = query.filter(customers::organization_id.eq(organization_id.as_str()));
            if let Some(normalized) = &normalized {
                query = query.filter(customers::email_normalized.eq(normalized.as_str()));
            }
        })
    }

    async fn update_customer(&self, customer: &Customer, event: &Event) -> Result<(), StoreError> {
        let id = customer.id.to_string();
        let organization_id = customer.organization_id.to_string();
        let changes = CustomerChanges::try_from(customer)?;
        let outbox = Outbox::of(std::slice::from_ref(event))?;
        db_write!(self, outbox, |conn| {
            let updated = conn
                .run(
                    update(customers::table.find(&id))
                        .filter(customers::organization_id.eq(&organization_id))
                        .set(changes),
                )
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
            let deleted = conn.run(delete(customers::table.find(&id))).await?;
            if deleted == 0 {
                return Ok(false);
            }
            outbox.store(conn).await?;
            Ok(true)
        })
    }
}
