//! Destinations: their rows, port and scoped lists.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::{insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::ids::{DestinationId, OrganizationId};
use mandate_domain::model::Destination;
use mandate_domain::policy::DestinationScope;
use mandate_domain::ports::{DestinationStore, Page, PageRequest, StoreError};
use mandate_domain::values::Slug;

use crate::DbStore;
use crate::errors::Error;
use crate::page::{empty_page, into_page, page_cursor, page_limit, sql_limit};
use crate::pool::db_run;
use crate::rows::{parsed, to_i32, to_naive, to_u32, to_utc};
use crate::schema::destinations;

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = destinations, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct DestinationRow {
    pub(crate) id: String,
    pub(crate) organization_id: String,
    pub(crate) slug: String,
    pub(crate) display_name: String,
    pub(crate) payment_address: Option<String>,
    pub(crate) max_agents: i32,
    pub(crate) pending_claim_ttl_seconds: i32,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) updated_at: NaiveDateTime,
}

impl TryFrom<&Destination> for DestinationRow {
    type Error = Error;
    fn try_from(destination: &Destination) -> Result<Self, Error> {
        Ok(Self {
            id: destination.id.to_string(),
            organization_id: destination.organization_id.to_string(),
            slug: destination.slug.to_string(),
            display_name: destination.display_name.clone(),
            payment_address: destination.payment_address.clone(),
            max_agents: to_i32("max_agents", destination.max_agents)?,
            pending_claim_ttl_seconds: to_i32(
                "pending_claim_ttl_seconds",
                destination.pending_claim_ttl_seconds,
            )?,
            created_at: to_naive(destination.created_at),
            updated_at: to_naive(destination.updated_at),
        })
    }
}

impl TryFrom<DestinationRow> for Destination {
    type Error = Error;
    fn try_from(row: DestinationRow) -> Result<Self, Error> {
        Ok(Destination {
            id: parsed("destination id", &row.id, DestinationId::parse)?,
            organization_id: parsed(
                "organization id",
                &row.organization_id,
                OrganizationId::parse,
            )?,
            slug: parsed("destination slug", &row.slug, Slug::parse)?,
            display_name: row.display_name,
            payment_address: row.payment_address,
            max_agents: to_u32("max_agents", row.max_agents)?,
            pending_claim_ttl_seconds: to_u32(
                "pending_claim_ttl_seconds",
                row.pending_claim_ttl_seconds,
            )?,
            created_at: to_utc(row.created_at),
            updated_at: to_utc(row.updated_at),
        })
    }
}

/// The changeable fields of a destination; `None` clears the payment address.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = destinations, treat_none_as_null = true)]
pub(crate) struct DestinationChanges {
    pub(crate) display_name: String,
    pub(crate) payment_address: Option<String>,
    pub(crate) max_agents: i32,
    pub(crate) pending_claim_ttl_seconds: i32,
    pub(crate) updated_at: NaiveDateTime,
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
            updated_at: to_naive(destination.updated_at),
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
