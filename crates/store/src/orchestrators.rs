//! Orchestrators: their row and port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::insert_into;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use mandate_domain::ids::OrchestratorId;
use mandate_domain::model::{ApiKey, Orchestrator};
use mandate_domain::ports::{OrchestratorFilter, OrchestratorStore, Page, PageRequest, StoreError};
use mandate_domain::values::Slug;

use crate::DbStore;
use crate::dialect::Dialect;
use crate::organizations::KeyRow;
use crate::page::db_page;
use crate::pool::{db_first, db_transaction};
use crate::rows::{At, same_fields};
use crate::schema::{api_keys, orchestrators};

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = orchestrators, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct OrchestratorRow {
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub(crate) id: OrchestratorId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub(crate) slug: Slug,
    pub(crate) name: String,
    #[diesel(deserialize_as = At, serialize_as = At)]
    pub(crate) created_at: DateTime<Utc>,
}

same_fields!(
    Orchestrator,
    OrchestratorRow {
        id,
        slug,
        name,
        created_at
    }
);

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
            conn.run(insert_into(orchestrators::table).values(orchestrator))
                .await?;
            conn.run(insert_into(api_keys::table).values(key)).await?;
            Ok(())
        })
    }

    async fn orchestrator(&self, id: &OrchestratorId) -> Result<Option<Orchestrator>, StoreError> {
        let id = id.to_string();
        db_first!(self, OrchestratorRow, orchestrators::table.find(&id))
    }

    async fn orchestrator_by_slug(&self, slug: &Slug) -> Result<Option<Orchestrator>, StoreError> {
        let slug = slug.to_string();
        db_first!(
            self,
            OrchestratorRow,
            orchestrators::table.filter(orchestrators::slug.eq(&slug))
        )
    }

    async fn list_orchestrators(
        &self,
        filter: &OrchestratorFilter,
        page: &PageRequest,
    ) -> Result<Page<Orchestrator>, StoreError> {
        let slug = filter.slug.as_ref().map(ToString::to_string);
        let name = filter.name.clone();
        db_page!(
            self,
            page,
            orchestrators,
            OrchestratorRow,
            OrchestratorId,
            |query| {
                if let Some(slug) = &slug {
                    query = query.filter(orchestrators::slug.eq(slug.as_str()));
                }
                if let Some(name) = &name {
                    query = query.filter(orchestrators::name.eq(name.as_str()));
                }
            }
        )
    }
}
