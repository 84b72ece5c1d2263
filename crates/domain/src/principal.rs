//! Who is calling: the result of authentication, handed to `authorize`.

use std::fmt;

use crate::ids::{ClientId, DestinationId, KeyId, OrchestratorId, OrganizationId};
use crate::model::Client;
use crate::values::PermissionSet;

/// The kinds of principal; each route declares which kinds it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrincipalKind {
    /// The operator, with the admin token.
    Admin,
    /// A platform key.
    Platform,
    /// A destination key.
    Destination,
    /// An orchestrator key without a client ID.
    Orchestrator,
    /// A client ID (orchestrator key + `X-Client-Id`, an access token, or an agent).
    Client,
}

impl PrincipalKind {
    /// Every kind.
    pub const ALL: [PrincipalKind; 5] = [
        PrincipalKind::Admin,
        PrincipalKind::Platform,
        PrincipalKind::Destination,
        PrincipalKind::Orchestrator,
        PrincipalKind::Client,
    ];

    /// The kind's name in the API and the documentation.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Admin => "admin",
            PrincipalKind::Platform => "platform",
            PrincipalKind::Destination => "destination",
            PrincipalKind::Orchestrator => "orchestrator",
            PrincipalKind::Client => "client",
        }
    }
}

impl fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller, checked against the store *now*.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator.
    Admin,
    /// A platform key, acting for its organization or, with `X-Destination-Id`, for one of
    /// its destinations as that destination's owner.
    Platform {
        /// The organization.
        organization_id: OrganizationId,
        /// The key used.
        key_id: KeyId,
        /// The destination named by `X-Destination-Id`, already checked to be in the
        /// organization.
        acting_for: Option<DestinationId>,
    },
    /// A destination key.
    Destination {
        /// The destination's organization.
        organization_id: OrganizationId,
        /// The destination.
        destination_id: DestinationId,
        /// The key used.
        key_id: KeyId,
    },
    /// An orchestrator key without a client ID.
    Orchestrator {
        /// The orchestrator.
        orchestrator_id: OrchestratorId,
        /// The key used.
        key_id: KeyId,
    },
    /// A client ID.
    Client(ClientPrincipal),
}

/// A client ID acting: everything authorization needs, read when the request arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPrincipal {
    /// The client ID.
    pub client_id: ClientId,
    /// The orchestrator it was issued to.
    pub orchestrator_id: OrchestratorId,
    /// The delegating destination's organization.
    pub organization_id: OrganizationId,
    /// The delegating destination.
    pub destination_id: DestinationId,
    /// What it may do (for a token, narrowed to its scope).
    pub permissions: PermissionSet,
    /// `Some(permissions)` when a token's scope narrows what the client ID holds: webhook
    /// endpoints it registers receive no more than this, and it manages only endpoints whose
    /// scope fits inside it. `None` when it acts with everything the client ID holds (the
    /// orchestrator key with `X-Client-Id`, an agent, a token whose scope covers it all).
    pub scope: Option<PermissionSet>,
}

impl ClientPrincipal {
    /// A client ID acting with all the permissions it holds.
    pub fn of(client: Client) -> Self {
        Self {
            client_id: client.id,
            orchestrator_id: client.orchestrator_id,
            organization_id: client.organization_id,
            destination_id: client.destination_id,
            permissions: client.permissions,
            scope: None,
        }
    }

    /// The client ID acting through a credential limited to `scope`: it holds only the
    /// permissions in both, and it counts as narrowed when that is less than it holds.
    pub fn narrowed_to(mut self, scope: &PermissionSet) -> Self {
        let permissions = self.permissions.intersection(scope);
        self.scope = (permissions != self.permissions).then(|| permissions.clone());
        self.permissions = permissions;
        self
    }
}

impl Principal {
    /// The principal's kind.
    pub fn kind(&self) -> PrincipalKind {
        match self {
            Principal::Admin => PrincipalKind::Admin,
            Principal::Platform { .. } => PrincipalKind::Platform,
            Principal::Destination { .. } => PrincipalKind::Destination,
            Principal::Orchestrator { .. } => PrincipalKind::Orchestrator,
            Principal::Client(_) => PrincipalKind::Client,
        }
    }

    /// The credential that authenticated: the key's id, the client ID acting, or `admin`.
    /// What is counted per credential (rate limits) and scoped to it (`Idempotency-Key`).
    pub fn credential_id(&self) -> String {
        match self {
            Principal::Admin => "admin".to_owned(),
            Principal::Platform { key_id, .. }
            | Principal::Destination { key_id, .. }
            | Principal::Orchestrator { key_id, .. } => key_id.to_string(),
            Principal::Client(client) => client.client_id.to_string(),
        }
    }

    /// The organization the principal belongs to; none for the operator and orchestrators.
    pub fn organization_id(&self) -> Option<&OrganizationId> {
        match self {
            Principal::Platform {
                organization_id, ..
            }
            | Principal::Destination {
                organization_id, ..
            } => Some(organization_id),
            Principal::Client(client) => Some(&client.organization_id),
            Principal::Admin | Principal::Orchestrator { .. } => None,
        }
    }
}
