//! Destinations: their rows, port and scoped lists.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::{insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::ids::{DestinationId, OrganizationId};
use mandate_domain::model::Destination;
use mandate_domain::policy::DestinationScope;
use mandate_domain::ports::{DestinationStore, Page, PageRequest, StoreError};
use mandate_domain::values::Slug;

use crate::DbStore;
use crate::dialect::Dialect;
use crate::errors::Error;
use crate::page::{db_page, empty_page};
use crate::pool::{db_first, db_run};
use crate::rows::{At, to_i32, to_u32};
use crate::schema::destinations;

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = destinations, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct DestinationRow {
    #[diesel(deserialize_as = String, serialize_as = String)]
    id: DestinationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    organization_id: OrganizationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    slug: Slug,
    #[diesel(embed)]
    changes: DestinationChanges,
    #[diesel(deserialize_as = At, serialize_as = At)]
    created_at: DateTime<Utc>,
}

impl TryFrom<&Destination> for DestinationRow {
    type Error = Error;
    fn try_from(destination: &Destination) -> Result<Self, Error> {
        Ok(Self {
            id: destination.id.clone(),
            organization_id: destination.organization_id.clone(),
            slug: destination.slug.clone(),
            changes: DestinationChanges::try_from(destination)?,
            created_at: destination.created_at,
        })
    }
}

impl TryFrom<DestinationRow> for Destination {
    type Error = Error;
    fn try_from(row: DestinationRow) -> Result<Self, Error> {
        let changes = row.changes;
        Ok(Destination {
            id: row.id,
            organization_id: row.organization_id,
            slug: row.slug,
            display_name: changes.display_name,
            payment_address: changes.payment_address,
            max_agents: to_u32("max_agents", changes.max_agents)?,
            pending_claim_ttl_seconds: to_u32(
                "pending_claim_ttl_seconds",
                changes.pending_claim_ttl_seconds,
            )?,
            created_at: row.created_at,
            updated_at: changes.updated_at,
        })
    }
}

/// The changeable fields of a destination; `None` clears the payment address.
#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = destinations, treat_none_as_null = true)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct DestinationChanges {
    display_name: String,
    payment_address: Option<String>,
    max_agents: i32,
    pending_claim_ttl_seconds: i32,
    #[diesel(deserialize_as = At, serialize_as = At)]
    updated_at: DateTime<Utc>,
}

impl TryFrom<&Destination> for DestinationChanges {
    type Error = Error;
    fn try_from(destination: &Destination) -> Result<Self, Error> {
        Ok(Self {
            display_name: destination.display_name.clone(),
            payment_address: destination.payment_address.clone(),
            max_agents: to_i32("max_agents", destination.max_agents)?,
            pending_claim_ttl_seconds: to_i32(
                "pending_claim_ttl_seconds",
                destination.pending_claim_ttl_seconds,
            )?,
            updated_at: destination.updated_at,
        })
    }
}

/// The SQL form of a [`DestinationScope`] that can match something.
pub(crate) enum ScopeFilter {
    Organization(String),
    One(String),
}

#[async_trait]
impl DestinationStore for DbStore {
    async fn insert_destination(&self, destination: &Destination) -> Result<(), StoreError> {
        let row = DestinationRow::try_from(destination)?;
        db_run!(self, |conn| {
            conn.run(insert_into(destinations::table).values(row))
                .await?;
            Ok(())
        })
    }

    async fn destination(&self, id: &DestinationId) -> Result<Option<Destination>, StoreError> {
        let id = id.to_string();
        db_first!(self, DestinationRow, destinations::table.find(&id))
    }

    async fn destination_by_slug(&self, slug: &Slug) -> Result<Option<Destination>, StoreError> {
        let slug = slug.to_string();
        db_first!(
            self,
            DestinationRow,
            destinations::table.filter(destinations::slug.eq(&slug))
        )
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
        db_page!(
            self,
            page,
            destinations,
            DestinationRow,
            DestinationId,
            |query| {
                query = match &filter {
                    ScopeFilter::Organization(organization_id) => {
                        query.filter(destinations::organization_id.eq(organization_id.as_str()))
                    }
                    ScopeFilter::One(destination_id) => {
                        query.filter(destinations::id.eq(destination_id.as_str()))
                    }
                };
            }
        )
    }

    async fn update_destination(&self, destination: &Destination) -> Result<(), StoreError> {
        let changes = DestinationChanges::try_from(destination)?;
        let id = destination.id.to_string();
        let organization_id = destination.organization_id.to_string();
        db_run!(self, |conn| {
            let updated = conn
                .run(
                    update(destinations::table.find(&id))
                        .filter(destinations::organization_id.eq(&organization_id))
                        .set(changes),
                )
                .await?;
            if updated == 0 {
                return Err(Error::Data(format!("destination {id} does not exist")));
            }
            Ok(())
        })
    }
}
