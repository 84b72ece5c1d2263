//! API keys: issued, listed and revoked by their owners.

use chrono::{DateTime, Utc};

use super::{Mandate, ReadError};
use crate::ids::{DestinationId, KeyId};
use crate::keys::KeyKind;
use crate::model::{ApiKey, KeyOwner};
use crate::policy::{Action, Decision, Resource, authorize};
use crate::ports::StoreError;
use crate::principal::Principal;

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

impl Mandate {
    pub(super) fn issue_key(
        &self,
        kind: KeyKind,
        owner: KeyOwner,
        now: DateTime<Utc>,
    ) -> IssuedKey {
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
