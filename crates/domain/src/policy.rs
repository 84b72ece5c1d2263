//! `authorize(principal, action, resource)`: the one place that decides who may do what.
//!
//! Resources a principal may not see are answered as *not found*, never *forbidden*, so that
//! ids leak nothing; *forbidden* is for an action refused on something the caller may see.

use crate::ids::{DestinationId, OrchestratorId, OrganizationId};
use crate::principal::Principal;

/// What the caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create an organization (with its first platform key).
    CreateOrganization,
    /// Register an orchestrator (with its first key).
    CreateOrchestrator,
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
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// The caller may see the resource but not do this (HTTP 403).
    Forbidden,
    /// The caller may not know the resource exists (HTTP 404).
    NotFound,
}

/// How far a principal sees: whether it sees the resource at all, and whether it owns it.
enum Reach {
    Owner,
    Outsider,
}

/// Decides whether `principal` may perform `action` on `resource`.
pub fn authorize(principal: &Principal, action: Action, resource: Resource<'_>) -> Decision {
    use Action::*;
    match (action, resource) {
        (CreateOrganization | CreateOrchestrator, Resource::System) => admin_only(principal),
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
            ReadDestination | UpdateDestination | ManageDestinationKeys,
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
        // An action paired with a resource it does not apply to is a caller bug: refuse.
        _ => Decision::Forbidden,
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
