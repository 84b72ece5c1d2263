//! The entities of the product.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::agents::AgentKey;
use crate::ids::{ClientId, DestinationId, KeyId, OrchestratorId, OrganizationId};
use crate::values::{Permission, PermissionSet, Slug};

/// A platform: owns destinations and the shared customer pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// `org_…`
    pub id: OrganizationId,
    /// Display name, 1–200 characters.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A payee account under an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// `dst_…`
    pub id: DestinationId,
    /// The organization that owns it.
    pub organization_id: OrganizationId,
    /// Unique system-wide.
    pub slug: Slug,
    /// Shown to payers.
    pub display_name: String,
    /// Free text ≤ 256 characters, e.g. a wallet address.
    pub payment_address: Option<String>,
    /// How many agents may be approved at once.
    pub max_agents: u32,
    /// How long a pending claim waits for a decision.
    pub pending_claim_ttl_seconds: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Destination {
    /// `max_agents` when the creator names none.
    pub const DEFAULT_MAX_AGENTS: u32 = 10;
    /// `pending_claim_ttl_seconds` when the creator names none: one day.
    pub const DEFAULT_PENDING_CLAIM_TTL_SECONDS: u32 = 86_400;
}

/// A third-party service registered by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orchestrator {
    /// `orc_…`
    pub id: OrchestratorId,
    /// Unique system-wide.
    pub slug: Slug,
    /// Display name.
    pub name: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl Orchestrator {
    /// Keys an orchestrator may hold at once: enough to rotate without downtime.
    pub const MAX_ACTIVE_KEYS: usize = ApiKey::MAX_ACTIVE_PER_OWNER;
}

/// Whom an API key authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyOwner {
    /// A platform key: acts for the whole organization.
    Platform {
        /// The organization.
        organization_id: OrganizationId,
    },
    /// A destination key: acts for one destination.
    Destination {
        /// The destination's organization.
        organization_id: OrganizationId,
        /// The destination.
        destination_id: DestinationId,
    },
    /// An orchestrator key.
    Orchestrator {
        /// The orchestrator.
        orchestrator_id: OrchestratorId,
    },
}

/// A stored API key: only its keyed hash and a display prefix, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// `key_…`
    pub id: KeyId,
    /// Whom it authenticates.
    pub owner: KeyOwner,
    /// Keyed hash of the key (hex), the lookup index.
    pub hash: String,
    /// The first characters of the key, to recognise it in lists.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last successful authentication, updated at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Keys any owner (organization, destination, orchestrator) may hold active at once:
    /// enough to rotate without downtime, and no way to multiply its rate limit.
    pub const MAX_ACTIVE_PER_OWNER: usize = 2;

    /// Whether the key authenticates at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expires_at| expires_at > now)
    }
}

/// Whether a client ID still works; revocation is permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientStatus {
    /// Usable.
    Active,
    /// Revoked for good.
    Revoked,
}

impl ClientStatus {
    /// Every status.
    pub const ALL: [ClientStatus; 2] = [ClientStatus::Active, ClientStatus::Revoked];

    /// The status's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Active => "active",
            ClientStatus::Revoked => "revoked",
        }
    }

    /// Parses the API name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// A client ID: a delegation from one destination to one orchestrator. It serializes to its
/// API shape (`object: "client_id"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "object", rename = "client_id")]
pub struct Client {
    /// `cli_…`
    pub id: ClientId,
    /// The delegating destination's organization.
    #[serde(skip)]
    pub organization_id: OrganizationId,
    /// The delegating destination.
    pub destination_id: DestinationId,
    /// The orchestrator it is issued to.
    pub orchestrator_id: OrchestratorId,
    /// Free text for the issuer.
    pub label: Option<String>,
    /// What it may do.
    pub permissions: PermissionSet,
    /// For a client ID created by approving a claim: the agent's key, its only credential
    /// (the orchestrator's key with `X-Client-Id` and access tokens are refused for it).
    #[serde(rename = "agent_public_key")]
    pub agent_key: Option<AgentKey>,
    /// Bumped by every change, so that issued tokens can tell they are stale.
    pub version: u64,
    /// Active or revoked.
    pub status: ClientStatus,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Client {
    /// Grants `permission`; `true` (and a new version) only when it was missing.
    pub fn grant(&mut self, permission: Permission, now: DateTime<Utc>) -> bool {
        let changed = self.permissions.insert(permission);
        self.record_change(changed, now)
    }

    /// Withdraws `permission`; `true` (and a new version) only when it was held.
    pub fn withdraw(&mut self, permission: Permission, now: DateTime<Utc>) -> bool {
        let changed = self.permissions.remove(permission);
        self.record_change(changed, now)
    }

    /// Revokes the client ID for good; `true` (and a new version) the first time.
    pub fn revoke(&mut self, now: DateTime<Utc>) -> bool {
        let changed = self.status == ClientStatus::Active;
        self.status = ClientStatus::Revoked;
        self.record_change(changed, now)
    }

    fn record_change(&mut self, changed: bool, now: DateTime<Utc>) -> bool {
        if changed {
            self.version += 1;
            self.updated_at = now;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            id: ClientId::generate(),
            organization_id: OrganizationId::generate(),
            destination_id: DestinationId::generate(),
            orchestrator_id: OrchestratorId::generate(),
            label: None,
            agent_key: None,
            permissions: PermissionSet::default_for_new_client(),
            version: 1,
            status: ClientStatus::Active,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn every_change_bumps_the_version_and_no_op_does_not() {
        let mut client = client();
        let now = Utc::now();
        assert!(client.grant(Permission::ReadIncoming, now));
        assert_eq!(client.version, 2);
        assert!(!client.grant(Permission::ReadIncoming, now));
        assert_eq!(client.version, 2);
        assert!(client.withdraw(Permission::CreateIncoming, now));
        assert!(!client.withdraw(Permission::CreateIncoming, now));
        assert_eq!(client.version, 3);
        assert!(client.revoke(now));
        assert!(!client.revoke(now));
        assert_eq!((client.version, client.status), (4, ClientStatus::Revoked));
    }

    #[test]
    fn key_activity_follows_revocation_and_expiry() {
        let now = Utc::now();
        let mut key = ApiKey {
            id: KeyId::generate(),
            owner: KeyOwner::Orchestrator {
                orchestrator_id: OrchestratorId::generate(),
            },
            hash: String::new(),
            prefix: String::new(),
            created_at: now,
            last_used_at: None,
            expires_at: Some(now + chrono::Duration::seconds(1)),
            revoked_at: None,
        };
        assert!(key.is_active(now));
        assert!(!key.is_active(now + chrono::Duration::seconds(1)));
        key.expires_at = None;
        key.revoked_at = Some(now);
        assert!(!key.is_active(now));
    }
}
