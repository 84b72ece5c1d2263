//! Client IDs: issued by a destination's owner to an orchestrator; permissions granted and
//! withdrawn one by one; revoked for good. Every change bumps the version and emits an event.

use chrono::{DateTime, Utc};

use super::{InvalidField, Mandate, ReadError, text_field};
use crate::events::{Audience, Event, EventType};
use crate::ids::{ClientId, DestinationId, OrchestratorId};
use crate::model::{Client, ClientStatus, Orchestrator};
use crate::policy::{Action, Decision, Resource, authorize, client_scope};
use crate::ports::{Page, PageRequest, StoreError};
use crate::principal::Principal;
use crate::values::{Permission, PermissionSet, Slug};

/// Input of [`Mandate::issue_client`].
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    /// The orchestrator, by slug or id.
    pub orchestrator: String,
    /// Free text for the issuer, ≤ 200 characters.
    pub label: Option<String>,
    /// The permissions; default `create:incoming`, `create:outgoing`.
    pub permissions: Option<Vec<String>>,
}

/// Errors of [`Mandate::issue_client`].
#[derive(Debug, thiserror::Error)]
pub enum IssueClientError {
    /// A platform key must name the destination with `X-Destination-Id`.
    #[error("X-Destination-Id is required: name the destination this client ID is for")]
    DestinationRequired,
    /// The caller may not issue client IDs.
    #[error("this credential may not issue client IDs")]
    Forbidden,
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One change to a client ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientChange {
    /// Grant a permission (idempotent).
    Grant(Permission),
    /// Withdraw a permission (idempotent).
    Withdraw(Permission),
    /// Revoke the client ID for good (idempotent).
    Revoke,
}

/// Errors of [`Mandate::change_client`].
#[derive(Debug, thiserror::Error)]
pub enum ClientChangeError {
    /// No such client ID, or the caller may not see it.
    #[error("not found")]
    NotFound,
    /// The caller sees the client ID but may not change it.
    #[error("this credential may not change this client ID")]
    Forbidden,
    /// Permissions of a revoked client ID cannot change.
    #[error("the client ID is revoked")]
    Revoked,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Optimistic updates retry this often before giving up on a hot record.
pub(crate) const MAX_ATTEMPTS: usize = 8;

/// Parses a permission named by the caller.
pub fn parse_permission(field: &'static str, value: &str) -> Result<Permission, InvalidField> {
    Permission::parse(value).map_err(|_| InvalidField {
        field,
        reason: "unknown permission: use create:incoming, create:outgoing, read:incoming, \
                 read:outgoing, customers:read, customers:write or payments:report",
    })
}

/// A client-ID event: to the orchestrator and the destination's owners.
pub(crate) fn client_event(event_type: EventType, client: &Client, now: DateTime<Utc>) -> Event {
    Event::new(event_type, audience(client), client, now)
}

fn audience(client: &Client) -> Audience {
    Audience {
        organization_id: Some(client.organization_id.clone()),
        destination_id: Some(client.destination_id.clone()),
        orchestrator_id: Some(client.orchestrator_id.clone()),
        client_id: Some(client.id.clone()),
        direction: None,
        endpoint_id: None,
    }
}

/// The destination a principal creates things for (requests, client IDs).
pub(crate) enum ActingFor<'a> {
    /// This destination.
    Destination(&'a DestinationId),
    /// A platform key that did not name one with `X-Destination-Id`.
    Unnamed,
    /// A principal that never acts for a destination.
    Nobody,
}

pub(crate) fn acting_for(principal: &Principal) -> ActingFor<'_> {
    match principal {
        Principal::Platform {
            acting_for: Some(destination_id),
            ..
        }
        | Principal::Destination { destination_id, .. } => ActingFor::Destination(destination_id),
        Principal::Client(client) => ActingFor::Destination(&client.destination_id),
        Principal::Platform {
            acting_for: None, ..
        } => ActingFor::Unnamed,
        Principal::Admin | Principal::Orchestrator { .. } => ActingFor::Nobody,
    }
}

impl Mandate {
    async fn find_orchestrator(&self, reference: &str) -> Result<Orchestrator, IssueClientError> {
        let unknown = InvalidField {
            field: "orchestrator",
            reason: "no orchestrator with this slug or id",
        };
        let found = if let Ok(id) = OrchestratorId::parse(reference) {
            self.store.orchestrator(&id).await?
        } else {
            let slug = Slug::parse(reference).map_err(|_| unknown.clone())?;
            self.store.orchestrator_by_slug(&slug).await?
        };
        found.ok_or(IssueClientError::Invalid(unknown))
    }

    /// Issues a client ID for the caller's destination to an orchestrator.
    pub async fn issue_client(
        &self,
        principal: &Principal,
        input: NewClient,
        now: DateTime<Utc>,
    ) -> Result<Client, IssueClientError> {
        let destination_id = match acting_for(principal) {
            ActingFor::Destination(id) => id,
            ActingFor::Unnamed => return Err(IssueClientError::DestinationRequired),
            ActingFor::Nobody => return Err(IssueClientError::Forbidden),
        };
        let destination = self
            .store
            .destination(destination_id)
            .await?
            .ok_or(IssueClientError::Forbidden)?;
        let resource = Resource::Destination {
            id: &destination.id,
            organization_id: &destination.organization_id,
        };
        if authorize(principal, Action::ManageClients, resource) != Decision::Allow {
            return Err(IssueClientError::Forbidden);
        }
        let orchestrator = self.find_orchestrator(&input.orchestrator).await?;
        let label = input
            .label
            .map(|label| text_field("label", &label, 200, "must be 1-200 characters"))
            .transpose()?;
        let permissions = match input.permissions {
            None => PermissionSet::default_for_new_client(),
            Some(names) => names
                .iter()
                .map(|name| parse_permission("permissions", name))
                .collect::<Result<PermissionSet, _>>()?,
        };
        let client = Client {
            id: ClientId::generate(),
            organization_id: destination.organization_id,
            destination_id: destination.id,
            orchestrator_id: orchestrator.id,
            label,
            permissions,
            agent_key: None,
            version: 1,
            status: ClientStatus::Active,
            created_at: now,
            updated_at: now,
        };
        let event = client_event(EventType::ClientIdCreated, &client, now);
        self.store.insert_client(&client, &event).await?;
        Ok(client)
    }

    /// One client ID the caller may see.
    pub async fn client(&self, principal: &Principal, id: &ClientId) -> Result<Client, ReadError> {
        let client = self.store.client(id).await?.ok_or(ReadError::NotFound)?;
        ReadError::unless_allowed(authorize(
            principal,
            Action::ReadClient,
            Resource::Client(&client),
        ))?;
        Ok(client)
    }

    /// The client IDs the caller may see, revoked ones included unless `status` filters.
    pub async fn list_clients(
        &self,
        principal: &Principal,
        status: Option<ClientStatus>,
        page: &PageRequest,
    ) -> Result<Page<Client>, ReadError> {
        Ok(self
            .store
            .list_clients(&client_scope(principal), status, page)
            .await?)
    }

    /// Grants or withdraws one permission, or revokes the client ID. Idempotent: a change
    /// that changes nothing writes nothing and emits no event.
    pub async fn change_client(
        &self,
        principal: &Principal,
        id: &ClientId,
        change: ClientChange,
        now: DateTime<Utc>,
    ) -> Result<Client, ClientChangeError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut client = self
                .store
                .client(id)
                .await?
                .ok_or(ClientChangeError::NotFound)?;
            match authorize(principal, Action::ManageClients, Resource::Client(&client)) {
                Decision::Allow => {}
                Decision::Forbidden | Decision::Lacks(_) => {
                    return Err(ClientChangeError::Forbidden);
                }
                Decision::NotFound => return Err(ClientChangeError::NotFound),
            }
            let expected_version = client.version;
            let (changed, event_type) = match change {
                ClientChange::Revoke => (client.revoke(now), EventType::ClientIdRevoked),
                _ if client.status == ClientStatus::Revoked => {
                    return Err(ClientChangeError::Revoked);
                }
                ClientChange::Grant(permission) => (
                    client.grant(permission, now),
                    EventType::ClientIdPermissionsChanged,
                ),
                ClientChange::Withdraw(permission) => (
                    client.withdraw(permission, now),
                    EventType::ClientIdPermissionsChanged,
                ),
            };
            if !changed {
                return Ok(client);
            }
            let event = client_event(event_type, &client, now);
            if self
                .store
                .update_client(&client, expected_version, &event)
                .await?
            {
                return Ok(client);
            }
        }
        Err(ClientChangeError::Store(StoreError::Other(
            "the client ID kept changing concurrently".into(),
        )))
    }
}
