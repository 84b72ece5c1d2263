//! Destinations: a platform creates them in its organization; their owners and the platform
//! read and change their settings.

use chrono::{DateTime, Utc};

use super::{InvalidField, Mandate, ReadError, safe_text, slug_field, text_field};
use crate::ids::DestinationId;
use crate::model::Destination;
use crate::policy::{Action, Decision, Resource, authorize, destination_scope};
use crate::ports::{Page, PageRequest, StoreError};
use crate::principal::Principal;

/// Input of [`Mandate::create_destination`].
#[derive(Debug, Clone, Default)]
pub struct NewDestination {
    /// The slug (validated here).
    pub slug: String,
    /// Shown to payers, 1–200 characters.
    pub display_name: String,
    /// ≤ 256 characters.
    pub payment_address: Option<String>,
    /// 1–1000; default 10.
    pub max_agents: Option<u32>,
    /// 60–2,592,000; default 86,400.
    pub pending_claim_ttl_seconds: Option<u32>,
}

/// Input of [`Mandate::update_destination`]: only the fields present change.
#[derive(Debug, Clone, Default)]
pub struct DestinationChanges {
    /// New display name.
    pub display_name: Option<String>,
    /// New payment address; `Some(None)` clears it.
    pub payment_address: Option<Option<String>>,
    /// New agent limit.
    pub max_agents: Option<u32>,
    /// New pending-claim lifetime.
    pub pending_claim_ttl_seconds: Option<u32>,
}

const MAX_AGENTS_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;
const CLAIM_TTL_RANGE: std::ops::RangeInclusive<u32> = 60..=2_592_000;

fn check_max_agents(value: u32) -> Result<u32, InvalidField> {
    MAX_AGENTS_RANGE
        .contains(&value)
        .then_some(value)
        .ok_or(InvalidField {
            field: "max_agents",
            reason: "must be between 1 and 1000",
        })
}

fn check_claim_ttl(value: u32) -> Result<u32, InvalidField> {
    CLAIM_TTL_RANGE
        .contains(&value)
        .then_some(value)
        .ok_or(InvalidField {
            field: "pending_claim_ttl_seconds",
            reason: "must be between 60 and 2592000",
        })
}

fn check_payment_address(value: Option<String>) -> Result<Option<String>, InvalidField> {
    match value {
        Some(address) if address.chars().count() > 256 => Err(InvalidField {
            field: "payment_address",
            reason: "must be at most 256 characters",
        }),
        Some(address) => safe_text("payment_address", &address).map(|()| Some(address)),
        None => Ok(None),
    }
}

fn display_name(value: &str) -> Result<String, InvalidField> {
    text_field("display_name", value, 200, "must be 1-200 characters")
}

/// Errors of [`Mandate::create_destination`].
#[derive(Debug, thiserror::Error)]
pub enum CreateDestinationError {
    /// The caller may not create destinations in this organization.
    #[error("this credential may not create destinations")]
    Forbidden,
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// Another destination has this slug.
    #[error("a destination with this slug already exists")]
    SlugTaken,
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

/// Errors of [`Mandate::update_destination`].
#[derive(Debug, thiserror::Error)]
pub enum UpdateDestinationError {
    /// The destination does not exist or the caller may not see it.
    #[error("not found")]
    NotFound,
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Mandate {
    /// Creates a destination in the platform's organization.
    pub async fn create_destination(
        &self,
        principal: &Principal,
        input: NewDestination,
        now: DateTime<Utc>,
    ) -> Result<Destination, CreateDestinationError> {
        let Some(organization_id) = principal.organization_id() else {
            return Err(CreateDestinationError::Forbidden);
        };
        if authorize(
            principal,
            Action::CreateDestination,
            Resource::Organization(organization_id),
        ) != Decision::Allow
        {
            return Err(CreateDestinationError::Forbidden);
        }
        let destination = Destination {
            id: DestinationId::generate(),
            organization_id: organization_id.clone(),
            slug: slug_field(&input.slug)?,
            display_name: display_name(&input.display_name)?,
            payment_address: check_payment_address(input.payment_address)?,
            max_agents: check_max_agents(
                input.max_agents.unwrap_or(Destination::DEFAULT_MAX_AGENTS),
            )?,
            pending_claim_ttl_seconds: check_claim_ttl(
                input
                    .pending_claim_ttl_seconds
                    .unwrap_or(Destination::DEFAULT_PENDING_CLAIM_TTL_SECONDS),
            )?,
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_destination(&destination).await {
            Ok(()) => Ok(destination),
            Err(StoreError::Duplicate) => Err(CreateDestinationError::SlugTaken),
            Err(error) => Err(CreateDestinationError::Store(error)),
        }
    }

    /// One destination the caller may read.
    pub async fn destination(
        &self,
        principal: &Principal,
        id: &DestinationId,
    ) -> Result<Destination, ReadError> {
        self.destination_for(principal, id, Action::ReadDestination)
            .await
    }

    pub(super) async fn destination_for(
        &self,
        principal: &Principal,
        id: &DestinationId,
        action: Action,
    ) -> Result<Destination, ReadError> {
        let destination = self
            .store
            .destination(id)
            .await?
            .ok_or(ReadError::NotFound)?;
        let resource = Resource::Destination {
            id: &destination.id,
            organization_id: &destination.organization_id,
        };
        ReadError::unless_allowed(authorize(principal, action, resource))?;
        Ok(destination)
    }

    /// The destinations the caller may read, newest first.
    pub async fn list_destinations(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<Page<Destination>, ReadError> {
        Ok(self
            .store
            .list_destinations(&destination_scope(principal), page)
            .await?)
    }

    /// Changes a destination's settings.
    pub async fn update_destination(
        &self,
        principal: &Principal,
        id: &DestinationId,
        changes: DestinationChanges,
        now: DateTime<Utc>,
    ) -> Result<Destination, UpdateDestinationError> {
        let mut destination = match self
            .destination_for(principal, id, Action::UpdateDestination)
            .await
        {
            Ok(destination) => destination,
            Err(ReadError::NotFound | ReadError::Forbidden) => {
                return Err(UpdateDestinationError::NotFound);
            }
            Err(ReadError::Store(error)) => return Err(UpdateDestinationError::Store(error)),
        };
        if let Some(name) = changes.display_name {
            destination.display_name = display_name(&name)?;
        }
        if let Some(address) = changes.payment_address {
            destination.payment_address = check_payment_address(address)?;
        }
        if let Some(max_agents) = changes.max_agents {
            destination.max_agents = check_max_agents(max_agents)?;
        }
        if let Some(ttl) = changes.pending_claim_ttl_seconds {
            destination.pending_claim_ttl_seconds = check_claim_ttl(ttl)?;
        }
        destination.updated_at = now;
        self.store.update_destination(&destination).await?;
        Ok(destination)
    }
}
