//! What the operator does (organizations, orchestrators) and what each reads of itself.

use chrono::{DateTime, Utc};

use super::keys::IssuedKey;
use super::{InvalidField, Mandate, ReadError, slug_field, text_field};
use crate::ids::{OrchestratorId, OrganizationId};
use crate::keys::KeyKind;
use crate::model::{ApiKey, KeyOwner, Orchestrator, Organization};
use crate::policy::{Action, Decision, Resource, authorize};
use crate::ports::{OrchestratorFilter, OrganizationFilter, Page, PageRequest, StoreError};
use crate::principal::Principal;

/// Errors of [`Mandate::create_organization`].
#[derive(Debug, thiserror::Error)]
pub enum CreateOrganizationError {
    /// Only the operator creates organizations.
    #[error("only the operator may create organizations")]
    Forbidden,
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Errors of [`Mandate::create_orchestrator`].
#[derive(Debug, thiserror::Error)]
pub enum CreateOrchestratorError {
    /// Only the operator registers orchestrators.
    #[error("only the operator may register orchestrators")]
    Forbidden,
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// Another orchestrator has this slug.
    #[error("an orchestrator with this slug already exists")]
    SlugTaken,
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl Mandate {
    /// Creates an organization and its first platform key.
    pub async fn create_organization(
        &self,
        principal: &Principal,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<(Organization, IssuedKey), CreateOrganizationError> {
        if authorize(principal, Action::CreateOrganization, Resource::System) != Decision::Allow {
            return Err(CreateOrganizationError::Forbidden);
        }
        let organization = Organization {
            id: OrganizationId::generate(),
            name: text_field("name", name, 200, "must be 1-200 characters")?,
            created_at: now,
        };
        let owner = KeyOwner::Platform {
            organization_id: organization.id.clone(),
        };
        let key = self.issue_key(KeyKind::Platform, owner, now);
        self.store
            .insert_organization(&organization, &key.record)
            .await?;
        Ok((organization, key))
    }

    /// The organizations passing `filter`, for the operator.
    pub async fn list_organizations(
        &self,
        principal: &Principal,
        filter: &OrganizationFilter,
        page: &PageRequest,
    ) -> Result<Page<Organization>, ReadError> {
        if authorize(principal, Action::ListOperatorRecords, Resource::System) != Decision::Allow {
            return Err(ReadError::Forbidden);
        }
        Ok(self.store.list_organizations(filter, page).await?)
    }

    /// The orchestrators passing `filter`, for the operator.
    pub async fn list_orchestrators(
        &self,
        principal: &Principal,
        filter: &OrchestratorFilter,
        page: &PageRequest,
    ) -> Result<Page<Orchestrator>, ReadError> {
        if authorize(principal, Action::ListOperatorRecords, Resource::System) != Decision::Allow {
            return Err(ReadError::Forbidden);
        }
        Ok(self.store.list_orchestrators(filter, page).await?)
    }

    /// Registers an orchestrator and its first key.
    pub async fn create_orchestrator(
        &self,
        principal: &Principal,
        slug: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<(Orchestrator, IssuedKey), CreateOrchestratorError> {
        if authorize(principal, Action::CreateOrchestrator, Resource::System) != Decision::Allow {
            return Err(CreateOrchestratorError::Forbidden);
        }
        let orchestrator = Orchestrator {
            id: OrchestratorId::generate(),
            slug: slug_field(slug)?,
            name: text_field("name", name, 200, "must be 1-200 characters")?,
            created_at: now,
        };
        let owner = KeyOwner::Orchestrator {
            orchestrator_id: orchestrator.id.clone(),
        };
        let key = self.issue_key(KeyKind::Orchestrator, owner, now);
        match self
            .store
            .insert_orchestrator(&orchestrator, &key.record)
            .await
        {
            Ok(()) => Ok((orchestrator, key)),
            Err(StoreError::Duplicate) => Err(CreateOrchestratorError::SlugTaken),
            Err(error) => Err(CreateOrchestratorError::Store(error)),
        }
    }

    /// The platform's own organization.
    pub async fn organization(&self, principal: &Principal) -> Result<Organization, ReadError> {
        let Some(id) = principal.organization_id() else {
            return Err(ReadError::Forbidden);
        };
        match authorize(
            principal,
            Action::ReadOrganization,
            Resource::Organization(id),
        ) {
            Decision::Allow => self
                .store
                .organization(id)
                .await?
                .ok_or(ReadError::NotFound),
            Decision::NotFound => Err(ReadError::NotFound),
            Decision::Forbidden | Decision::Lacks(_) => Err(ReadError::Forbidden),
        }
    }

    /// The orchestrator's own profile and its keys.
    pub async fn orchestrator_profile(
        &self,
        principal: &Principal,
    ) -> Result<(Orchestrator, Vec<ApiKey>), ReadError> {
        let Principal::Orchestrator {
            orchestrator_id, ..
        } = principal
        else {
            return Err(ReadError::Forbidden);
        };
        if authorize(
            principal,
            Action::ReadOrchestrator,
            Resource::Orchestrator(orchestrator_id),
        ) != Decision::Allow
        {
            return Err(ReadError::NotFound);
        }
        let orchestrator = self
            .store
            .orchestrator(orchestrator_id)
            .await?
            .ok_or(ReadError::NotFound)?;
        let keys = self
            .store
            .keys_of(&KeyOwner::Orchestrator {
                orchestrator_id: orchestrator_id.clone(),
            })
            .await?;
        Ok((orchestrator, keys))
    }
}
