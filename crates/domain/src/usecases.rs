//! The use cases: each checks `authorize`, validates its input, and calls the ports.
//! Each has its own error enum, which the HTTP layer maps to status codes.

mod claims;
mod clients;
mod customers;
mod operations;
mod requests;
mod webhooks;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::ids::{DestinationId, KeyId, OrchestratorId, OrganizationId};
use crate::keys::{KeyHasher, KeyKind};
use crate::model::{ApiKey, Destination, KeyOwner, Orchestrator, Organization};
use crate::policy::{Action, Decision, Resource, authorize, destination_scope};
use crate::ports::{OrchestratorFilter, OrganizationFilter, Page, PageRequest, Store, StoreError};
use crate::principal::Principal;
use crate::values::Slug;

/// A field of the caller's input that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// The field's name in the API.
    pub field: &'static str,
    /// The rule it breaks.
    pub reason: &'static str,
}

pub use claims::{
    Approved, ClaimApprovalInput, ClaimDecisionError, NewClaim, SubmitClaimError, Submitted,
    parse_agent_key,
};
pub use clients::{ClientChange, ClientChangeError, IssueClientError, NewClient, parse_permission};
pub use customers::{CustomerChanges, CustomerError, NewCustomer};
pub use requests::{
    CreateRequestError, NewRequest, PaymentPage, PaymentPageError, RequestActionError,
    request_audience,
};
pub use webhooks::{
    AfterFailure, AttemptOutcome, ClaimedBatch, EndpointInput, FannedOut, FinishedAttempt,
    ROTATION_GRACE_HOURS, WebhookError,
};

/// The id recorded as `created_by`.
pub(crate) fn principal_id(principal: &Principal) -> String {
    match principal {
        Principal::Client(client) => client.client_id.to_string(),
        Principal::Destination { destination_id, .. } => destination_id.to_string(),
        Principal::Platform {
            organization_id, ..
        } => organization_id.to_string(),
        Principal::Orchestrator {
            orchestrator_id, ..
        } => orchestrator_id.to_string(),
        Principal::Admin => "admin".to_owned(),
    }
}

/// Whether `c` may not appear in free text shown to payers or owners: control characters
/// (NUL, CR, LF, tab, the C1 range …) and the bidirectional controls that can make text read
/// differently from what it is (U+202A–U+202E embeddings and overrides, U+2066–U+2069
/// isolates, and the marks U+200E, U+200F, U+061C).
pub fn is_unsafe_text_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

/// The rule [`is_unsafe_text_char`] enforces, as the error names it.
pub(crate) const UNSAFE_TEXT: &str = "must not contain control or bidirectional control characters";

/// `value`, refused when it holds a character [`is_unsafe_text_char`] refuses.
pub(crate) fn safe_text(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if value.chars().any(is_unsafe_text_char) {
        return Err(InvalidField {
            field,
            reason: UNSAFE_TEXT,
        });
    }
    Ok(())
}

fn text_field(
    field: &'static str,
    value: &str,
    max_chars: usize,
    reason: &'static str,
) -> Result<String, InvalidField> {
    let trimmed = value.trim();
    let length = trimmed.chars().count();
    if length == 0 || length > max_chars {
        return Err(InvalidField { field, reason });
    }
    safe_text(field, trimmed)?;
    Ok(trimmed.to_owned())
}

fn slug_field(value: &str) -> Result<Slug, InvalidField> {
    Slug::parse(value).map_err(|invalid| InvalidField {
        field: "slug",
        reason: invalid.0,
    })
}

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

/// Errors of reading one resource or a list.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The resource does not exist or the caller may not see it.
    #[error("not found")]
    NotFound,
    /// The caller may see the resource but not this.
    #[error("this credential may not do this")]
    Forbidden,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// Errors of creating, listing and revoking keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The owner does not exist or the caller may not see it, or it has no such key.
    #[error("not found")]
    NotFound,
    /// The caller may see the owner but not manage its keys.
    #[error("this credential may not manage these keys")]
    Forbidden,
    /// The owner already holds as many active keys as it may.
    #[error("already {0} active keys: revoke one first")]
    TooManyActiveKeys(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ReadError> for KeyError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::NotFound => KeyError::NotFound,
            ReadError::Forbidden => KeyError::Forbidden,
            ReadError::Store(error) => KeyError::Store(error),
        }
    }
}

/// Whose keys a key operation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyTarget {
    /// The caller's own organization (platform keys).
    Organization,
    /// A destination.
    Destination(DestinationId),
    /// The caller's own orchestrator.
    Orchestrator,
}

/// A key just created: the stored record and the plain key, shown once.
#[derive(Debug)]
pub struct IssuedKey {
    /// What is stored.
    pub record: ApiKey,
    /// The key itself.
    pub plain: String,
}

/// The use cases, over one store.
#[derive(Clone)]
pub struct Mandate {
    store: Arc<dyn Store>,
    hasher: KeyHasher,
}

impl Mandate {
    /// Wires the use cases to a store and the server's key-hashing secret.
    pub fn new(store: Arc<dyn Store>, hasher: KeyHasher) -> Self {
        Self { store, hasher }
    }

    /// The same use cases on another store: the transaction of a keyed call
    /// ([`crate::ports::KeyedWrite::store`]).
    pub fn on_store(&self, store: Arc<dyn Store>) -> Self {
        Self {
            store,
            hasher: self.hasher.clone(),
        }
    }

    /// The store, for the keyed writes of the HTTP adapter and the webhook workers; anything
    /// else an adapter needs is a use case.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The key hasher, shared with authentication.
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    fn issue_key(&self, kind: KeyKind, owner: KeyOwner, now: DateTime<Utc>) -> IssuedKey {
        let generated = self.hasher.generate(kind);
        IssuedKey {
            record: ApiKey {
                id: KeyId::generate(),
                owner,
                hash: generated.hash,
                prefix: generated.prefix,
                created_at: now,
                last_used_at: None,
                expires_at: None,
                revoked_at: None,
            },
            plain: generated.plain,
        }
    }

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

    async fn destination_for(
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
        match authorize(principal, action, resource) {
            Decision::Allow => Ok(destination),
            Decision::Forbidden | Decision::Lacks(_) => Err(ReadError::Forbidden),
            Decision::NotFound => Err(ReadError::NotFound),
        }
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

    /// Resolves whose keys `target` means for this caller, after authorizing key management.
    async fn key_owner(
        &self,
        principal: &Principal,
        target: &KeyTarget,
    ) -> Result<(KeyKind, KeyOwner), KeyError> {
        let decision = match (target, principal) {
            (
                KeyTarget::Organization,
                Principal::Platform {
                    organization_id, ..
                },
            ) => {
                let decision = authorize(
                    principal,
                    Action::ManageOrganizationKeys,
                    Resource::Organization(organization_id),
                );
                (
                    decision,
                    KeyKind::Platform,
                    KeyOwner::Platform {
                        organization_id: organization_id.clone(),
                    },
                )
            }
            (
                KeyTarget::Orchestrator,
                Principal::Orchestrator {
                    orchestrator_id, ..
                },
            ) => {
                let decision = authorize(
                    principal,
                    Action::ManageOrchestratorKeys,
                    Resource::Orchestrator(orchestrator_id),
                );
                (
                    decision,
                    KeyKind::Orchestrator,
                    KeyOwner::Orchestrator {
                        orchestrator_id: orchestrator_id.clone(),
                    },
                )
            }
            (KeyTarget::Destination(id), _) => {
                let destination = self
                    .destination_for(principal, id, Action::ManageDestinationKeys)
                    .await?;
                let owner = KeyOwner::Destination {
                    organization_id: destination.organization_id,
                    destination_id: destination.id,
                };
                (Decision::Allow, KeyKind::Destination, owner)
            }
            _ => return Err(KeyError::Forbidden),
        };
        match decision {
            (Decision::Allow, kind, owner) => Ok((kind, owner)),
            (Decision::Forbidden | Decision::Lacks(_), ..) => Err(KeyError::Forbidden),
            (Decision::NotFound, ..) => Err(KeyError::NotFound),
        }
    }

    /// Creates a key; every owner may hold at most [`ApiKey::MAX_ACTIVE_PER_OWNER`] active.
    pub async fn create_key(
        &self,
        principal: &Principal,
        target: &KeyTarget,
        now: DateTime<Utc>,
    ) -> Result<IssuedKey, KeyError> {
        let (kind, owner) = self.key_owner(principal, target).await?;
        let key = self.issue_key(kind, owner, now);
        let limit = ApiKey::MAX_ACTIVE_PER_OWNER;
        if self.store.insert_key(&key.record, Some(limit), now).await? {
            Ok(key)
        } else {
            Err(KeyError::TooManyActiveKeys(limit))
        }
    }

    /// Every key of the target, revoked ones included.
    pub async fn list_keys(
        &self,
        principal: &Principal,
        target: &KeyTarget,
    ) -> Result<Vec<ApiKey>, KeyError> {
        let (_, owner) = self.key_owner(principal, target).await?;
        Ok(self.store.keys_of(&owner).await?)
    }

    /// Revokes one key of the target at once.
    pub async fn revoke_key(
        &self,
        principal: &Principal,
        target: &KeyTarget,
        key_id: &KeyId,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, KeyError> {
        let (_, owner) = self.key_owner(principal, target).await?;
        self.store
            .revoke_key(&owner, key_id, now)
            .await?
            .ok_or(KeyError::NotFound)
    }
}
