//! Orchestrators: their row and port.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::insert_into;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use mandate_domain::ids::OrchestratorId;
use mandate_domain::model::{ApiKey, Orchestrator};
use mandate_domain::ports::{OrchestratorFilter, OrchestratorStore, Page, PageRequest, StoreError};
use mandate_domain::values::Slug;

use crate::DbStore;
use crate::errors::Error;
use crate::organizations::KeyRow;
use crate::page::{into_page, page_cursor, page_limit, sql_limit};
use crate::pool::{db_run, db_transaction};
use crate::rows::{parsed, to_naive, to_utc};
use crate::schema::{api_keys, orchestrators};

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = orchestrators, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct OrchestratorRow {
    pub(crate) id: String,
    pub(crate) slug: String,
    pub(crate) name: String,
    pub(crate) created_at: NaiveDateTime,
}

impl From<&Orchestrator> for OrchestratorRow {
    fn from(orchestrator: &Orchestrator) -> Self {
        Self {
            id: orchestrator.id.to_string(),
            slug: orchestrator.slug.to_string(),
            name: orchestrator.name.clone(),
            created_at: to_naive(orchestrator.created_at),
        }
    }
}

impl TryFrom<OrchestratorRow> for Orchestrator {
    type Error = Error;
    fn try_from(row: OrchestratorRow) -> Result<Self, Error> {
        Ok(Orchestrator {
            id: parsed("orchestrator id", &row.id, OrchestratorId::parse)?,
            slug: parsed("orchestrator slug", &row.slug, Slug::parse)?,
            name: row.name,
            created_at: to_utc(row.created_at),
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

    async fn list_orchestrators(
        &self,
        filter: &OrchestratorFilter,
        page: &PageRequest,
    ) -> Result<Page<Orchestrator>, StoreError> {
        let slug = filter.slug.as_ref().map(ToString::to_string);
        let name = filter.name.clone();
        let limit = page_limit(page);
        let cursor = page_cursor(page, OrchestratorId::parse);
        db_run!(self, |conn| {
            let mut query = orchestrators::table
                .select(OrchestratorRow::as_select())
                .order(orchestrators::id.desc())
                .limit(sql_limit(limit + 1))
                .into_boxed();
            if let Some(slug) = &slug {
                query = query.filter(orchestrators::slug.eq(slug.as_str()));
            }
            if let Some(name) = &name {
                query = query.filter(orchestrators::name.eq(name.as_str()));
            }
            if let Some(cursor) = &cursor {
                query = query.filter(orchestrators::id.lt(cursor.as_str()));
            }
            into_page(query.load(conn).await?, limit)
        })
    }
}
