//! Table rows and their mapping to the domain types. Reading a row that breaks a domain rule
//! (a malformed id or slug, an unknown key kind) is an error, never a panic.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use mandate_domain::ids::{DestinationId, KeyId, OrchestratorId, OrganizationId};
use mandate_domain::model::{ApiKey, Destination, KeyOwner, Orchestrator, Organization};
use mandate_domain::values::Slug;

use crate::pool::Error;
use crate::schema::{api_keys, destinations, orchestrators, organizations};

/// The `api_keys.kind` of each owner.
pub(crate) const PLATFORM: &str = "platform";
pub(crate) const DESTINATION: &str = "destination";
pub(crate) const ORCHESTRATOR: &str = "orchestrator";

/// UTC without a zone, cut to microseconds: PostgreSQL keeps no more, so SQLite keeps the same.
pub(crate) fn to_naive(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc().trunc_subsecs(6)
}

fn to_utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

fn parsed<T, E: std::fmt::Display>(
    what: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, Error> {
    parse(value)
        .map_err(|error| Error::Data(format!("stored {what} {value:?} is invalid: {error}")))
}

fn to_i32(what: &str, value: u32) -> Result<i32, Error> {
    i32::try_from(value).map_err(|_| Error::Data(format!("{what} {value} is out of range")))
}

fn to_u32(what: &str, value: i32) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| Error::Data(format!("stored {what} {value} is out of range")))
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = organizations, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct OrganizationRow {
    id: String,
    name: String,
    created_at: NaiveDateTime,
}

impl From<&Organization> for OrganizationRow {
    fn from(organization: &Organization) -> Self {
        Self {
            id: organization.id.to_string(),
            name: organization.name.clone(),
            created_at: to_naive(organization.created_at),
        }
    }
}

impl TryFrom<OrganizationRow> for Organization {
    type Error = Error;
    fn try_from(row: OrganizationRow) -> Result<Self, Error> {
        Ok(Organization {
            id: parsed("organization id", &row.id, OrganizationId::parse)?,
            name: row.name,
            created_at: to_utc(row.created_at),
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = orchestrators, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct OrchestratorRow {
    id: String,
    slug: String,
    name: String,
    created_at: NaiveDateTime,
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

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = destinations, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct DestinationRow {
    id: String,
    organization_id: String,
    slug: String,
    display_name: String,
    payment_address: Option<String>,
    max_agents: i32,
    pending_claim_ttl_seconds: i32,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
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
    display_name: String,
    payment_address: Option<String>,
    max_agents: i32,
    pending_claim_ttl_seconds: i32,
    updated_at: NaiveDateTime,
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

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct KeyRow {
    id: String,
    kind: String,
    organization_id: Option<String>,
    destination_id: Option<String>,
    orchestrator_id: Option<String>,
    key_hash: String,
    prefix: String,
    created_at: NaiveDateTime,
    last_used_at: Option<NaiveDateTime>,
    expires_at: Option<NaiveDateTime>,
    revoked_at: Option<NaiveDateTime>,
}

impl From<&ApiKey> for KeyRow {
    fn from(key: &ApiKey) -> Self {
        let (kind, organization_id, destination_id, orchestrator_id) = match &key.owner {
            KeyOwner::Platform { organization_id } => {
                (PLATFORM, Some(organization_id.to_string()), None, None)
            }
            KeyOwner::Destination {
                organization_id,
                destination_id,
            } => (
                DESTINATION,
                Some(organization_id.to_string()),
                Some(destination_id.to_string()),
                None,
            ),
            KeyOwner::Orchestrator { orchestrator_id } => {
                (ORCHESTRATOR, None, None, Some(orchestrator_id.to_string()))
            }
        };
        Self {
            id: key.id.to_string(),
            kind: kind.to_owned(),
            organization_id,
            destination_id,
            orchestrator_id,
            key_hash: key.hash.clone(),
            prefix: key.prefix.clone(),
            created_at: to_naive(key.created_at),
            last_used_at: key.last_used_at.map(to_naive),
            expires_at: key.expires_at.map(to_naive),
            revoked_at: key.revoked_at.map(to_naive),
        }
    }
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = Error;
    fn try_from(row: KeyRow) -> Result<Self, Error> {
        let missing = |column: &str| {
            Error::Data(format!(
                "stored {} key {} has no {column}",
                row.kind, row.id
            ))
        };
        let owner = match row.kind.as_str() {
            PLATFORM => KeyOwner::Platform {
                organization_id: parsed(
                    "organization id",
                    row.organization_id
                        .as_deref()
                        .ok_or_else(|| missing("organization_id"))?,
                    OrganizationId::parse,
                )?,
            },
            DESTINATION => KeyOwner::Destination {
                organization_id: parsed(
                    "organization id",
                    row.organization_id
                        .as_deref()
                        .ok_or_else(|| missing("organization_id"))?,
                    OrganizationId::parse,
                )?,
                destination_id: parsed(
                    "destination id",
                    row.destination_id
                        .as_deref()
                        .ok_or_else(|| missing("destination_id"))?,
                    DestinationId::parse,
                )?,
            },
            ORCHESTRATOR => KeyOwner::Orchestrator {
                orchestrator_id: parsed(
                    "orchestrator id",
                    row.orchestrator_id
                        .as_deref()
                        .ok_or_else(|| missing("orchestrator_id"))?,
                    OrchestratorId::parse,
                )?,
            },
            other => {
                return Err(Error::Data(format!(
                    "stored key {} has unknown kind {other:?}",
                    row.id
                )));
            }
        };
        Ok(ApiKey {
            id: parsed("key id", &row.id, KeyId::parse)?,
            owner,
            hash: row.key_hash,
            prefix: row.prefix,
            created_at: to_utc(row.created_at),
            last_used_at: row.last_used_at.map(to_utc),
            expires_at: row.expires_at.map(to_utc),
            revoked_at: row.revoked_at.map(to_utc),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_that_break_domain_rules_are_errors() {
        let row = KeyRow {
            id: KeyId::generate().to_string(),
            kind: "admin".into(),
            organization_id: None,
            destination_id: None,
            orchestrator_id: None,
            key_hash: "h".into(),
            prefix: "p".into(),
            created_at: to_naive(Utc::now()),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
        };
        assert!(matches!(ApiKey::try_from(row), Err(Error::Data(_))));
        let row = OrchestratorRow {
            id: OrchestratorId::generate().to_string(),
            slug: "Not A Slug".into(),
            name: "n".into(),
            created_at: to_naive(Utc::now()),
        };
        assert!(matches!(Orchestrator::try_from(row), Err(Error::Data(_))));
    }
}
