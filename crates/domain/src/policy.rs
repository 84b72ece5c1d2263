//! `authorize(principal, action, resource)`: the one place that decides who may do what.
//!
//! Resources a principal may not see are answered as *not found*, never *forbidden*, so that
//! ids leak nothing; *forbidden* is for an action refused on something the caller may see.

use crate::claims::Claim;
use crate::ids::{ClientId, DestinationId, OrchestratorId, OrganizationId};
use crate::model::Client;
use crate::payments::{Direction, PaymentRequest};
use crate::principal::Principal;
use crate::values::{Permission, PermissionSet};
use crate::webhooks::WebhookEndpoint;

/// What the caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create an organization (with its first platform key).
    CreateOrganization,
    /// Register an orchestrator (with its first key).
    CreateOrchestrator,
    /// List every organization and orchestrator (the operator's look-ups).
    ListOperatorRecords,
    /// Read an organization's profile.
    ReadOrganization,
    /// Create, list or revoke an organization's platform keys.
    ManageOrganizationKeys,
    /// Create a destination in an organization.
    CreateDestination,
    /// Read a destination.
    ReadDestination,
    /// Change a destination's settings.
    UpdateDestination,
    /// Create, list or revoke a destination's keys.
    ManageDestinationKeys,
    /// Read an orchestrator's own profile.
    ReadOrchestrator,
    /// Create or revoke an orchestrator's keys.
    ManageOrchestratorKeys,
    /// Issue client IDs for a destination, grant and revoke their permissions.
    ManageClients,
    /// Read a client ID.
    ReadClient,
    /// Read a claim.
    ReadClaim,
    /// Approve, reject or revoke a claim.
    DecideClaim,
    /// Create a payment request of a direction for a destination.
    CreateRequest(Direction),
    /// Read a payment request.
    ReadRequest,
    /// Cancel a payment request.
    CancelRequest,
    /// Create a public payment link for a payment request.
    CreatePaymentLink,
    /// Report a payment against a payment request.
    ReportPayment,
    /// Read the organization's customer pool.
    ReadCustomers,
    /// Create, change or delete customers of the organization's pool.
    WriteCustomers,
    /// Read, change, rotate, test or delete a webhook endpoint, or see its deliveries.
    ManageEndpoint,
}

/// What the action is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// The whole system (operator actions).
    System,
    /// An organization.
    Organization(&'a OrganizationId),
    /// A destination of an organization.
    Destination {
        /// The destination.
        id: &'a DestinationId,
        /// Its organization.
        organization_id: &'a OrganizationId,
    },
    /// An orchestrator.
    Orchestrator(&'a OrchestratorId),
    /// A client ID.
    Client(&'a Client),
    /// A claim.
    Claim(&'a Claim),
    /// A payment request.
    Request(&'a PaymentRequest),
    /// A webhook endpoint.
    Endpoint(&'a WebhookEndpoint),
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// The caller may see the resource but not do this (HTTP 403).
    Forbidden,
    /// The caller (a client ID) may see the resource, and would be allowed with this
    /// permission (HTTP 403 naming it).
    Lacks(Permission),
    /// The caller may not know the resource exists (HTTP 404).
    NotFound,
}

/// How far a principal sees: whether it sees the resource at all, and whether it owns it.
enum Reach {
    Owner,
    Outsider,
}

/// Decides whether `principal` may perform `action` on `resource`.
///
/// ```
/// use mandate_domain::ids::{DestinationId, KeyId, OrganizationId};
/// use mandate_domain::policy::{Action, Decision, Resource, authorize};
/// use mandate_domain::principal::Principal;
///
/// let organization_id = OrganizationId::generate();
/// let destination_id = DestinationId::generate();
/// let shop = Resource::Destination {
///     id: &destination_id,
///     organization_id: &organization_id,
/// };
///
/// // The destination's own key may read it.
/// let owner = Principal::Destination {
///     organization_id: organization_id.clone(),
///     destination_id: destination_id.clone(),
///     key_id: KeyId::generate(),
/// };
/// assert_eq!(authorize(&owner, Action::ReadDestination, shop), Decision::Allow);
///
/// // Another organization's platform key may not even learn that it exists.
/// let stranger = Principal::Platform {
///     organization_id: OrganizationId::generate(),
///     key_id: KeyId::generate(),
///     acting_for: None,
/// };
/// assert_eq!(authorize(&stranger, Action::ReadDestination, shop), Decision::NotFound);
/// ```
pub fn authorize(principal: &Principal, action: Action, resource: Resource<'_>) -> Decision {
    use Action::*;
    match (action, resource) {
        (CreateOrganization | CreateOrchestrator | ListOperatorRecords, Resource::System) => {
            admin_only(principal)
        }
        (
            ReadOrganization | ManageOrganizationKeys | CreateDestination,
            Resource::Organization(id),
        ) => {
            match principal {
                Principal::Platform {
                    organization_id,
                    acting_for: None,
                    ..
                } if organization_id == id => Decision::Allow,
                // Acting for one destination narrows a platform key to that destination.
                Principal::Platform {
                    organization_id, ..
                } if organization_id == id => Decision::Forbidden,
                Principal::Destination {
                    organization_id, ..
                } if organization_id == id => Decision::Forbidden,
                _ => outsider(principal),
            }
        }
        (
            ReadDestination | UpdateDestination | ManageDestinationKeys | ManageClients,
            Resource::Destination {
                id,
                organization_id,
            },
        ) => match destination_reach(principal, id, organization_id) {
            Reach::Owner => Decision::Allow,
            Reach::Outsider => outsider(principal),
        },
        (ReadOrchestrator | ManageOrchestratorKeys, Resource::Orchestrator(id)) => {
            match principal {
                Principal::Orchestrator {
                    orchestrator_id, ..
                } if orchestrator_id == id => Decision::Allow,
                _ => outsider(principal),
            }
        }
        (ReadClient, Resource::Client(client)) => {
            let owner = matches!(
                destination_reach(principal, &client.destination_id, &client.organization_id),
                Reach::Owner
            );
            if owner || is_orchestrator_of(principal, client) {
                Decision::Allow
            } else {
                outsider(principal)
            }
        }
        (ReadClaim | DecideClaim, Resource::Claim(claim)) => {
            match destination_reach(principal, &claim.destination_id, &claim.organization_id) {
                Reach::Owner => Decision::Allow,
                // The submitting orchestrator follows its claims but does not decide them.
                Reach::Outsider if is_orchestrator(principal, &claim.orchestrator_id) => {
                    if action == ReadClaim {
                        Decision::Allow
                    } else {
                        Decision::Forbidden
                    }
                }
                Reach::Outsider => outsider(principal),
            }
        }
        (ManageClients, Resource::Client(client)) => {
            match destination_reach(principal, &client.destination_id, &client.organization_id) {
                Reach::Owner => Decision::Allow,
                // The orchestrator sees its client IDs but may not change them.
                Reach::Outsider if is_orchestrator_of(principal, client) => Decision::Forbidden,
                Reach::Outsider => outsider(principal),
            }
        }
        (
            CreateRequest(direction),
            Resource::Destination {
                id,
                organization_id,
            },
        ) => match principal {
            Principal::Client(client) if &client.destination_id == id => {
                needs(&client.permissions, direction.create_permission())
            }
            _ => match destination_reach(principal, id, organization_id) {
                Reach::Owner => Decision::Allow,
                Reach::Outsider => outsider(principal),
            },
        },
        (
            ReadRequest | CancelRequest | CreatePaymentLink | ReportPayment,
            Resource::Request(request),
        ) => {
            if !can_read_request(principal, request) {
                return outsider(principal);
            }
            let Principal::Client(client) = principal else {
                // Owners do everything to what they can read.
                return Decision::Allow;
            };
            let create = request.direction.create_permission();
            match action {
                ReadRequest => Decision::Allow,
                CreatePaymentLink => needs(&client.permissions, create),
                // No permission lets a client cancel what another one created.
                CancelRequest if request.client_id.as_ref() != Some(&client.client_id) => {
                    Decision::Forbidden
                }
                CancelRequest => needs(&client.permissions, create),
                _ => needs(&client.permissions, Permission::PaymentsReport),
            }
        }
        (ReadCustomers | WriteCustomers, Resource::Organization(id)) => {
            if principal.organization_id() != Some(id) {
                return outsider(principal);
            }
            let needed = if action == ReadCustomers {
                Permission::CustomersRead
            } else {
                Permission::CustomersWrite
            };
            match principal {
                Principal::Client(client) => needs(&client.permissions, needed),
                // Every owner in the organization shares the one pool.
                _ => Decision::Allow,
            }
        }
        // An endpoint is its owner's; a narrowed credential manages only the endpoints whose
        // scope fits inside its own, and may not learn that the others exist.
        (ManageEndpoint, Resource::Endpoint(endpoint)) => {
            if endpoint.owner.is_owned_by(principal)
                && endpoint_scope_fits(endpoint.scope.as_ref(), credential_scope(principal))
            {
                Decision::Allow
            } else {
                Decision::NotFound
            }
        }
        // An action paired with a resource it does not apply to is a caller bug: refuse.
        _ => Decision::Forbidden,
    }
}

/// Allowed when `permissions` hold `needed`; otherwise refused, naming it.
fn needs(permissions: &PermissionSet, needed: Permission) -> Decision {
    if permissions.contains(needed) {
        Decision::Allow
    } else {
        Decision::Lacks(needed)
    }
}

fn admin_only(principal: &Principal) -> Decision {
    match principal {
        Principal::Admin => Decision::Allow,
        _ => Decision::Forbidden,
    }
}

/// Operator actions are refused outright; everything else hides what it may not see.
fn outsider(principal: &Principal) -> Decision {
    match principal {
        Principal::Admin => Decision::Forbidden,
        _ => Decision::NotFound,
    }
}

fn destination_reach(
    principal: &Principal,
    id: &DestinationId,
    organization_id: &OrganizationId,
) -> Reach {
    let owns = match principal {
        Principal::Platform {
            organization_id: own,
            acting_for,
            ..
        } => own == organization_id && acting_for.as_ref().is_none_or(|acting| acting == id),
        Principal::Destination { destination_id, .. } => destination_id == id,
        Principal::Admin | Principal::Orchestrator { .. } | Principal::Client(_) => false,
    };
    if owns { Reach::Owner } else { Reach::Outsider }
}

fn is_orchestrator_of(principal: &Principal, client: &Client) -> bool {
    is_orchestrator(principal, &client.orchestrator_id)
}

fn is_orchestrator(principal: &Principal, id: &OrchestratorId) -> bool {
    matches!(principal,
        Principal::Orchestrator { orchestrator_id, .. } if orchestrator_id == id)
}

/// Whether `principal` may see `request` at all (SPEC §4): owners see their destinations'
/// requests; a client sees what was created through it, plus every request of a direction it
/// holds `read:<direction>` for, on its own destination.
fn can_read_request(principal: &Principal, request: &PaymentRequest) -> bool {
    match principal {
        Principal::Client(client) => {
            client.destination_id == request.destination_id
                && (request.client_id.as_ref() == Some(&client.client_id)
                    || client
                        .permissions
                        .contains(request.direction.read_permission()))
        }
        _ => matches!(
            destination_reach(principal, &request.destination_id, &request.organization_id),
            Reach::Owner
        ),
    }
}

/// The scope a principal's credential is narrowed to: a token's scope when it is less than
/// its client ID holds; `None` for every credential that acts with all its owner holds.
pub fn credential_scope(principal: &Principal) -> Option<&PermissionSet> {
    match principal {
        Principal::Client(client) => client.scope.as_ref(),
        _ => None,
    }
}

/// Whether an endpoint registered with scope `endpoint` (`None`: its owner's full
/// permissions) fits inside a credential's scope `credential` (`None`: unnarrowed), so that
/// the credential may manage it: the list-query form of [`Action::ManageEndpoint`]'s scope
/// part, which the stores translate to SQL.
pub fn endpoint_scope_fits(
    endpoint: Option<&PermissionSet>,
    credential: Option<&PermissionSet>,
) -> bool {
    match (endpoint, credential) {
        (_, None) => true,
        (Some(endpoint), Some(credential)) => endpoint.is_subset(credential),
        (None, Some(_)) => false,
    }
}

/// The list-query form of [`Action::ReadRequest`]: the store translates it to SQL, and
/// [`RequestScope::contains`] is the same rule in Rust, checked against `authorize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestScope {
    /// Every request of the organization.
    Organization(OrganizationId),
    /// Every request of one destination.
    Destination(DestinationId),
    /// A client: its own requests, plus the directions it may read, on its destination.
    Client {
        /// The client ID.
        client_id: ClientId,
        /// Its destination.
        destination_id: DestinationId,
        /// Holds `read:incoming`.
        read_incoming: bool,
        /// Holds `read:outgoing`.
        read_outgoing: bool,
    },
    /// None at all.
    Nothing,
}

impl RequestScope {
    /// Whether `request` is in the scope.
    pub fn contains(&self, request: &PaymentRequest) -> bool {
        match self {
            RequestScope::Organization(id) => &request.organization_id == id,
            RequestScope::Destination(id) => &request.destination_id == id,
            RequestScope::Client {
                client_id,
                destination_id,
                read_incoming,
                read_outgoing,
            } => {
                &request.destination_id == destination_id
                    && (request.client_id.as_ref() == Some(client_id)
                        || match request.direction {
                            Direction::Incoming => *read_incoming,
                            Direction::Outgoing => *read_outgoing,
                        })
            }
            RequestScope::Nothing => false,
        }
    }
}

/// The requests `principal` may read, as a scope for list queries.
pub fn request_scope(principal: &Principal) -> RequestScope {
    match principal {
        Principal::Platform {
            organization_id,
            acting_for: None,
            ..
        } => RequestScope::Organization(organization_id.clone()),
        Principal::Platform {
            acting_for: Some(destination_id),
            ..
        }
        | Principal::Destination { destination_id, .. } => {
            RequestScope::Destination(destination_id.clone())
        }
        Principal::Client(client) => RequestScope::Client {
            client_id: client.client_id.clone(),
            destination_id: client.destination_id.clone(),
            read_incoming: client.permissions.contains(Permission::ReadIncoming),
            read_outgoing: client.permissions.contains(Permission::ReadOutgoing),
        },
        Principal::Admin | Principal::Orchestrator { .. } => RequestScope::Nothing,
    }
}

/// Which client IDs a principal may list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientScope {
    /// Every client ID of the organization's destinations.
    Organization(OrganizationId),
    /// The client IDs of one destination.
    Destination(DestinationId),
    /// The client IDs issued to one orchestrator.
    Orchestrator(OrchestratorId),
    /// None at all.
    Nothing,
}

impl ClientScope {
    /// Whether a client ID (or a claim) of this organization, destination and orchestrator is
    /// in the scope: the Rust twin of the store's SQL.
    pub fn contains(
        &self,
        organization_id: &OrganizationId,
        destination_id: &DestinationId,
        orchestrator_id: &OrchestratorId,
    ) -> bool {
        match self {
            ClientScope::Organization(id) => id == organization_id,
            ClientScope::Destination(id) => id == destination_id,
            ClientScope::Orchestrator(id) => id == orchestrator_id,
            ClientScope::Nothing => false,
        }
    }
}

/// The list-query form of [`Action::ReadClient`], and of [`Action::ReadClaim`]: claims and
/// client IDs are seen by the same principals.
pub fn client_scope(principal: &Principal) -> ClientScope {
    match principal {
        Principal::Platform {
            organization_id,
            acting_for: None,
            ..
        } => ClientScope::Organization(organization_id.clone()),
        Principal::Platform {
            acting_for: Some(destination_id),
            ..
        }
        | Principal::Destination { destination_id, .. } => {
            ClientScope::Destination(destination_id.clone())
        }
        Principal::Orchestrator {
            orchestrator_id, ..
        } => ClientScope::Orchestrator(orchestrator_id.clone()),
        Principal::Admin | Principal::Client(_) => ClientScope::Nothing,
    }
}

/// Which ledger entries a principal may read: its organization's chain, narrowed to one
/// destination for a destination key or a platform key acting for one; `None` for others.
pub fn ledger_scope(principal: &Principal) -> Option<(OrganizationId, Option<DestinationId>)> {
    match principal {
        Principal::Platform {
            organization_id,
            acting_for,
            ..
        } => Some((organization_id.clone(), acting_for.clone())),
        Principal::Destination {
            organization_id,
            destination_id,
            ..
        } => Some((organization_id.clone(), Some(destination_id.clone()))),
        Principal::Admin | Principal::Orchestrator { .. } | Principal::Client(_) => None,
    }
}

/// Which destinations a principal may list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationScope {
    /// Every destination of the organization.
    Organization(OrganizationId),
    /// Exactly one destination.
    One(DestinationId),
    /// None at all.
    Nothing,
}

/// The list-query form of [`Action::ReadDestination`]: exactly the destinations `authorize`
/// would let `principal` read.
pub fn destination_scope(principal: &Principal) -> DestinationScope {
    match principal {
        Principal::Platform {
            organization_id,
            acting_for: None,
            ..
        } => DestinationScope::Organization(organization_id.clone()),
        Principal::Platform {
            acting_for: Some(destination_id),
            ..
        }
        | Principal::Destination { destination_id, .. } => {
            DestinationScope::One(destination_id.clone())
        }
        Principal::Admin | Principal::Orchestrator { .. } | Principal::Client(_) => {
            DestinationScope::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ids::{ClientId, KeyId};
    use crate::principal::ClientPrincipal;
    use crate::values::PermissionSet;

    struct World {
        orgs: Vec<OrganizationId>,
        destinations: Vec<(DestinationId, OrganizationId)>,
        orchestrators: Vec<OrchestratorId>,
    }

    fn world() -> World {
        let orgs = vec![OrganizationId::generate(), OrganizationId::generate()];
        let destinations = vec![
            (DestinationId::generate(), orgs[0].clone()),
            (DestinationId::generate(), orgs[0].clone()),
            (DestinationId::generate(), orgs[1].clone()),
        ];
        World {
            orgs,
            destinations,
            orchestrators: vec![OrchestratorId::generate(), OrchestratorId::generate()],
        }
    }

    fn principals(world: &World) -> Vec<Principal> {
        let mut all = vec![Principal::Admin];
        for org in &world.orgs {
            all.push(Principal::Platform {
                organization_id: org.clone(),
                key_id: KeyId::generate(),
                acting_for: None,
            });
        }
        for (dst, org) in &world.destinations {
            all.push(Principal::Platform {
                organization_id: org.clone(),
                key_id: KeyId::generate(),
                acting_for: Some(dst.clone()),
            });
            all.push(Principal::Destination {
                organization_id: org.clone(),
                destination_id: dst.clone(),
                key_id: KeyId::generate(),
            });
            all.push(Principal::Client(ClientPrincipal {
                client_id: ClientId::generate(),
                orchestrator_id: world.orchestrators[0].clone(),
                organization_id: org.clone(),
                destination_id: dst.clone(),
                permissions: PermissionSet::default_for_new_client(),
                scope: None,
            }));
        }
        for orc in &world.orchestrators {
            all.push(Principal::Orchestrator {
                orchestrator_id: orc.clone(),
                key_id: KeyId::generate(),
            });
        }
        all
    }

    #[test]
    fn only_the_operator_creates_organizations_and_orchestrators() {
        let world = world();
        for principal in principals(&world) {
            let expected = if principal == Principal::Admin {
                Decision::Allow
            } else {
                Decision::Forbidden
            };
            assert_eq!(
                authorize(&principal, Action::CreateOrganization, Resource::System),
                expected
            );
            assert_eq!(
                authorize(&principal, Action::CreateOrchestrator, Resource::System),
                expected
            );
        }
    }

    #[test]
    fn destinations_are_seen_by_their_owners_only() {
        let world = world();
        for principal in principals(&world) {
            for (dst, org) in &world.destinations {
                let decision = authorize(
                    &principal,
                    Action::ReadDestination,
                    Resource::Destination {
                        id: dst,
                        organization_id: org,
                    },
                );
                let expected = match &principal {
                    Principal::Platform {
                        organization_id,
                        acting_for: None,
                        ..
                    } if organization_id == org => Decision::Allow,
                    Principal::Platform {
                        acting_for: Some(acting),
                        ..
                    } if acting == dst => Decision::Allow,
                    Principal::Destination { destination_id, .. } if destination_id == dst => {
                        Decision::Allow
                    }
                    Principal::Admin => Decision::Forbidden,
                    _ => Decision::NotFound,
                };
                assert_eq!(decision, expected, "{principal:?} on {dst}");
            }
        }
    }

    #[test]
    fn orchestrators_see_only_themselves() {
        let world = world();
        let me = &world.orchestrators[0];
        let mine = Principal::Orchestrator {
            orchestrator_id: me.clone(),
            key_id: KeyId::generate(),
        };
        let other = Principal::Orchestrator {
            orchestrator_id: world.orchestrators[1].clone(),
            key_id: KeyId::generate(),
        };
        assert_eq!(
            authorize(
                &mine,
                Action::ManageOrchestratorKeys,
                Resource::Orchestrator(me)
            ),
            Decision::Allow
        );
        assert_eq!(
            authorize(&other, Action::ReadOrchestrator, Resource::Orchestrator(me)),
            Decision::NotFound
        );
    }

    proptest! {
        /// The list scope and the single-resource rule never disagree.
        #[test]
        fn destination_scope_matches_authorize(principal_index in 0usize..64, destination_index in 0usize..3) {
            let world = world();
            let all = principals(&world);
            let principal = &all[principal_index % all.len()];
            let (dst, org) = &world.destinations[destination_index];
            let allowed = authorize(principal, Action::ReadDestination, Resource::Destination { id: dst, organization_id: org }) == Decision::Allow;
            let in_scope = match destination_scope(principal) {
                DestinationScope::Organization(scope) => &scope == org,
                DestinationScope::One(scope) => &scope == dst,
                DestinationScope::Nothing => false,
            };
            prop_assert_eq!(allowed, in_scope);
        }
    }
}
