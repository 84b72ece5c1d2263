//! Claims: submitted by an orchestrator for an agent (after the HTTP adapter has checked the
//! agent's signature), decided by the destination's owner, expired by a background job; the
//! ledger records approvals and revocations.

use chrono::{DateTime, Duration, Utc};

use super::clients::{MAX_ATTEMPTS, parse_permission};
use super::{InvalidField, Mandate, ReadError, text_field};
use crate::agents::AgentKey;
use crate::claims::{
    ChainCheck, ChainVerifier, Claim, ClaimStatus, ClaimTransitionError, Grant, LedgerEntry,
};
use crate::events::{Audience, Event, EventType};
use crate::ids::{ClaimId, ClientId};
use crate::model::{Client, ClientStatus};
use crate::policy::{Action, Decision, Resource, authorize, client_scope, ledger_scope};
use crate::ports::{ClaimApproval, ClaimSubmission, Page, PageRequest, StoreError};
use crate::principal::Principal;
use crate::values::{PermissionSet, Slug};

/// Input of [`Mandate::submit_claim`], as the orchestrator sends it.
#[derive(Debug, Clone, Default)]
pub struct NewClaim {
    /// The destination's slug.
    pub namespace: String,
    /// `ed25519:<base64>`; the adapter has checked the request is signed by it.
    pub public_key: String,
    /// The orchestrator's slug; must be the caller's.
    pub service: String,
    /// The agent's IPv4 or IPv6 address.
    pub ip_address: String,
    /// 8–256 characters, never reused by the orchestrator.
    pub nonce: String,
    /// Whom the agent acts for, 1–256 characters.
    pub subject: Option<String>,
    /// The agent's id within the service, 1–128 characters.
    pub agent_id: String,
    /// The agent's display name, 1–128 characters.
    pub agent_name: String,
    /// Requested permissions; default `create:incoming`, `create:outgoing`.
    pub permissions: Option<Vec<String>>,
}

/// Errors of [`Mandate::submit_claim`].
#[derive(Debug, thiserror::Error)]
pub enum SubmitClaimError {
    /// Only an orchestrator submits claims, and only in its own name.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// No destination has this slug.
    #[error("no destination with this namespace")]
    UnknownNamespace,
    /// The orchestrator used the claim's body `nonce` before.
    #[error(
        "the claim's nonce field was already used by this orchestrator: send a fresh nonce in \
         the body with every claim (this is not the signature's nonce)"
    )]
    NonceReused,
    /// The agent id has a pending or approved claim with another key.
    #[error("this agent_id already has a pending or approved claim with another key")]
    AgentIdTaken,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A submission's outcome: a new claim, or the live claim that already existed.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The claim.
    pub claim: Claim,
    /// Whether it was created by this call.
    pub created: bool,
}

/// Input of [`Mandate::approve_claim`].
#[derive(Debug, Clone, Default)]
pub struct ClaimApprovalInput {
    /// When the approval ends; must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// Granted permissions, a subset of the requested ones; default all requested.
    pub permissions: Option<Vec<String>>,
}

/// An approval: the claim and the destination's agent count.
#[derive(Debug, Clone)]
pub struct Approved {
    /// The approved claim (with its client ID).
    pub claim: Claim,
    /// Approved claims of the destination, this one included.
    pub approved_agents: u32,
    /// The destination's limit.
    pub max_agents: u32,
}

/// Errors of deciding a claim.
#[derive(Debug, thiserror::Error)]
pub enum ClaimDecisionError {
    /// No such claim, or the caller may not see it.
    #[error("not found")]
    NotFound,
    /// The caller sees the claim but may not decide it.
    #[error("only the destination's owner may decide this claim")]
    Forbidden,
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The claim's status does not allow it.
    #[error(transparent)]
    Status(#[from] ClaimTransitionError),
    /// The destination already has `max_agents` approved agents.
    #[error("the destination already has {approved_agents} of {max_agents} approved agents")]
    Full {
        /// Approved claims of the destination.
        approved_agents: u32,
        /// The destination's limit.
        max_agents: u32,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses an agent's public key named by the caller.
pub fn parse_agent_key(field: &'static str, value: &str) -> Result<AgentKey, InvalidField> {
    AgentKey::parse(value).map_err(|_| InvalidField {
        field,
        reason: "expected ed25519:<base64 of a 32-byte Ed25519 public key>",
    })
}

fn audience(claim: &Claim) -> Audience {
    Audience {
        organization_id: Some(claim.organization_id.clone()),
        destination_id: Some(claim.destination_id.clone()),
        orchestrator_id: Some(claim.orchestrator_id.clone()),
        client_id: claim.client_id.clone(),
        direction: None,
        endpoint_id: None,
    }
}

fn claim_event(event_type: EventType, claim: &Claim, now: DateTime<Utc>) -> Event {
    Event::new(event_type, audience(claim), claim, now)
}

fn optional_text(
    field: &'static str,
    value: Option<&str>,
    max_chars: usize,
    reason: &'static str,
) -> Result<Option<String>, InvalidField> {
    value
        .map(|value| text_field(field, value, max_chars, reason))
        .transpose()
}

/// How many verified entries one read of the chain brings.
const CHAIN_PAGE: u32 = 1000;

impl Mandate {
    /// Stores an agent's claim for a destination, submitted by the orchestrator that runs
    /// the agent. The caller has verified that the request is signed by `input.public_key`.
    pub async fn submit_claim(
        &self,
        principal: &Principal,
        input: NewClaim,
        now: DateTime<Utc>,
    ) -> Result<Submitted, SubmitClaimError> {
        let Principal::Orchestrator {
            orchestrator_id, ..
        } = principal
        else {
            return Err(SubmitClaimError::Forbidden(
                "only an orchestrator key may submit claims",
            ));
        };
        let public_key = parse_agent_key("public_key", &input.public_key)?;
        let ip_address = input.ip_address.trim().parse().map_err(|_| InvalidField {
            field: "ip_address",
            reason: "must be an IPv4 or IPv6 address",
        })?;
        let nonce_length = input.nonce.chars().count();
        if !(8..=256).contains(&nonce_length) {
            return Err(InvalidField {
                field: "nonce",
                reason: "must be 8-256 characters",
            }
            .into());
        }
        let subject = optional_text(
            "subject",
            input.subject.as_deref(),
            256,
            "must be 1-256 characters",
        )?;
        let agent_id = text_field("agent_id", &input.agent_id, 128, "must be 1-128 characters")?;
        let agent_name = text_field(
            "agent_name",
            &input.agent_name,
            128,
            "must be 1-128 characters",
        )?;
        let permissions = match input.permissions {
            None => PermissionSet::default_for_new_client(),
            Some(names) => names
                .iter()
                .map(|name| parse_permission("permissions", name))
                .collect::<Result<PermissionSet, _>>()?,
        };
        let service = Slug::parse(&input.service).map_err(|invalid| InvalidField {
            field: "service",
            reason: invalid.0,
        })?;
        let orchestrator = self
            .store
            .orchestrator(orchestrator_id)
            .await?
            .ok_or(SubmitClaimError::Forbidden("unknown orchestrator"))?;
        if orchestrator.slug != service {
            return Err(SubmitClaimError::Forbidden(
                "service must be the slug of the orchestrator whose key signs the request",
            ));
        }
        let namespace =
            Slug::parse(&input.namespace).map_err(|_| SubmitClaimError::UnknownNamespace)?;
        let destination = self
            .store
            .destination_by_slug(&namespace)
            .await?
            .ok_or(SubmitClaimError::UnknownNamespace)?;
        let claim = Claim {
            id: ClaimId::generate(),
            organization_id: destination.organization_id,
            destination_id: destination.id,
            namespace,
            orchestrator_id: orchestrator.id,
            service,
            public_key,
            agent_id,
            agent_name,
            subject,
            ip_address,
            permissions,
            status: ClaimStatus::Pending,
            client_id: None,
            pending_expires_at: now
                + Duration::seconds(i64::from(destination.pending_claim_ttl_seconds)),
            expires_at: None,
            ledger_status: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let mut event = claim_event(EventType::ClaimSubmitted, &claim, now);
        // The owner's notification links straight to the decision.
        if let (Some(public_url), Some(object)) = (&self.public_url, event.object.as_object_mut()) {
            object.insert(
                "review_url".into(),
                format!("{public_url}/console/claims/{}", claim.id).into(),
            );
        }
        match self
            .store
            .submit_claim(&claim, &input.nonce, &event)
            .await?
        {
            ClaimSubmission::Created => Ok(Submitted {
                claim,
                created: true,
            }),
            ClaimSubmission::Existing(claim) => Ok(Submitted {
                claim: *claim,
                created: false,
            }),
            ClaimSubmission::NonceReused => Err(SubmitClaimError::NonceReused),
            ClaimSubmission::AgentIdTaken => Err(SubmitClaimError::AgentIdTaken),
        }
    }

    /// One claim the caller may see.
    pub async fn claim(&self, principal: &Principal, id: &ClaimId) -> Result<Claim, ReadError> {
        let claim = self.store.claim(id).await?.ok_or(ReadError::NotFound)?;
        ReadError::unless_allowed(authorize(
            principal,
            Action::ReadClaim,
            Resource::Claim(&claim),
        ))?;
        Ok(claim)
    }

    /// The claims the caller may see: an owner's destinations' claims, an orchestrator's own.
    pub async fn list_claims(
        &self,
        principal: &Principal,
        status: Option<ClaimStatus>,
        page: &PageRequest,
    ) -> Result<Page<Claim>, ReadError> {
        Ok(self
            .store
            .list_claims(&client_scope(principal), status, page)
            .await?)
    }

    async fn claim_to_decide(
        &self,
        principal: &Principal,
        id: &ClaimId,
    ) -> Result<Claim, ClaimDecisionError> {
        let claim = self
            .store
            .claim(id)
            .await?
            .ok_or(ClaimDecisionError::NotFound)?;
        match authorize(principal, Action::DecideClaim, Resource::Claim(&claim)) {
            Decision::Allow => Ok(claim),
            Decision::Forbidden | Decision::Lacks(_) => Err(ClaimDecisionError::Forbidden),
            Decision::NotFound => Err(ClaimDecisionError::NotFound),
        }
    }

    /// Approves a pending claim: creates the agent's client ID (its only credential is the
    /// agent's key), unless the destination already has `max_agents` approved agents.
    pub async fn approve_claim(
        &self,
        principal: &Principal,
        id: &ClaimId,
        input: ClaimApprovalInput,
        now: DateTime<Utc>,
    ) -> Result<Approved, ClaimDecisionError> {
        if input.expires_at.is_some_and(|at| at <= now) {
            return Err(InvalidField {
                field: "expires_at",
                reason: "must be in the future",
            }
            .into());
        }
        let narrowed = input
            .permissions
            .as_ref()
            .map(|names| {
                names
                    .iter()
                    .map(|name| parse_permission("permissions", name))
                    .collect::<Result<PermissionSet, _>>()
            })
            .transpose()?;
        for _ in 0..MAX_ATTEMPTS {
            let mut claim = self.claim_to_decide(principal, id).await?;
            let permissions = match &narrowed {
                Some(narrowed) if !narrowed.is_subset(&claim.permissions) => {
                    return Err(InvalidField {
                        field: "permissions",
                        reason: "must be a subset of the permissions the claim requests",
                    }
                    .into());
                }
                Some(narrowed) => narrowed.clone(),
                None => claim.permissions.clone(),
            };
            let destination = self
                .store
                .destination(&claim.destination_id)
                .await?
                .ok_or(ClaimDecisionError::NotFound)?;
            let client = Client {
                id: ClientId::generate(),
                organization_id: claim.organization_id.clone(),
                destination_id: claim.destination_id.clone(),
                orchestrator_id: claim.orchestrator_id.clone(),
                label: Some(claim.agent_name.clone()),
                permissions: permissions.clone(),
                agent_key: Some(claim.public_key.clone()),
                version: 1,
                status: ClientStatus::Active,
                created_at: now,
                updated_at: now,
            };
            let expected_version = claim.version;
            let grant = Grant {
                client_id: client.id.clone(),
                permissions,
                expires_at: input.expires_at,
            };
            claim.approve(grant, now)?;
            let events = [
                claim_event(EventType::ClaimApproved, &claim, now),
                super::clients::client_event(EventType::ClientIdCreated, &client, now),
            ];
            match self
                .store
                .approve_claim(
                    &claim,
                    expected_version,
                    &client,
                    destination.max_agents,
                    &events,
                )
                .await?
            {
                ClaimApproval::Approved { approved_agents } => {
                    return Ok(Approved {
                        claim,
                        approved_agents,
                        max_agents: destination.max_agents,
                    });
                }
                ClaimApproval::Full { approved_agents } => {
                    return Err(ClaimDecisionError::Full {
                        approved_agents,
                        max_agents: destination.max_agents,
                    });
                }
                ClaimApproval::Stale => {}
            }
        }
        Err(concurrent_changes())
    }

    /// Rejects a pending claim.
    pub async fn reject_claim(
        &self,
        principal: &Principal,
        id: &ClaimId,
        now: DateTime<Utc>,
    ) -> Result<Claim, ClaimDecisionError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut claim = self.claim_to_decide(principal, id).await?;
            let expected_version = claim.version;
            claim.reject(now)?;
            let events = [claim_event(EventType::ClaimRejected, &claim, now)];
            if self
                .store
                .update_claim(&claim, expected_version, None, &events)
                .await?
            {
                return Ok(claim);
            }
        }
        Err(concurrent_changes())
    }

    /// Revokes an approved claim and, in the same transaction, the agent's client ID.
    pub async fn revoke_claim(
        &self,
        principal: &Principal,
        id: &ClaimId,
        now: DateTime<Utc>,
    ) -> Result<Claim, ClaimDecisionError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut claim = self.claim_to_decide(principal, id).await?;
            let expected_version = claim.version;
            claim.revoke(now)?;
            if self
                .end_claim(&claim, expected_version, EventType::ClaimRevoked, now)
                .await?
            {
                return Ok(claim);
            }
        }
        Err(concurrent_changes())
    }

    /// Saves a claim that left `pending` or `approved` with its event, revoking the agent's
    /// client ID with it when there is one; `false` when another change came first.
    async fn end_claim(
        &self,
        claim: &Claim,
        expected_version: u64,
        event_type: EventType,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut events = vec![claim_event(event_type, claim, now)];
        let mut client = match &claim.client_id {
            Some(client_id) => self.store.client(client_id).await?,
            None => None,
        };
        let mut revoked = None;
        if let Some(client) = client.as_mut() {
            let version_before = client.version;
            if client.revoke(now) {
                events.push(super::clients::client_event(
                    EventType::ClientIdRevoked,
                    client,
                    now,
                ));
                revoked = Some((&*client, version_before));
            }
        }
        self.store
            .update_claim(claim, expected_version, revoked, &events)
            .await
    }

    /// Expires pending claims past their lifetime and approvals past their `expires_at`
    /// (revoking the agents' client IDs); returns how many.
    pub async fn expire_due_claims(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        let due = self.store.claims_due_for_expiry(now, limit).await?;
        let mut expired = 0;
        for mut claim in due {
            let expected_version = claim.version;
            if claim.expire(now).is_some()
                // A concurrent decision wins; the next run looks again.
                && self
                    .end_claim(&claim, expected_version, EventType::ClaimExpired, now)
                    .await?
            {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Appends queued approvals and revocations to the ledger; returns how many.
    pub async fn record_ledger(&self, limit: u32) -> Result<usize, StoreError> {
        Ok(self.store.append_queued(limit).await?.len())
    }

    /// The ledger entries the caller may read, newest first: a platform's whole organization,
    /// a destination's own entries.
    pub async fn ledger(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<Page<LedgerEntry>, ReadError> {
        let (organization_id, destination_id) =
            ledger_scope(principal).ok_or(ReadError::Forbidden)?;
        Ok(self
            .store
            .ledger_entries(&organization_id, destination_id.as_ref(), page)
            .await?)
    }

    /// Recomputes the caller's organization's chain from the first entry. A destination's
    /// owner (destination key, or platform key acting for it) is answered for its own entries
    /// only: their count and the hash of the newest, with `valid` for the chain they are
    /// linked into (see [`ChainVerifier::for_destination`]).
    pub async fn verify_ledger(&self, principal: &Principal) -> Result<ChainCheck, ReadError> {
        let (organization_id, destination_id) =
            ledger_scope(principal).ok_or(ReadError::Forbidden)?;
        let mut verifier =
            destination_id.map_or_else(ChainVerifier::default, ChainVerifier::for_destination);
        let mut after = 0;
        loop {
            let entries = self
                .store
                .ledger_chain(&organization_id, after, CHAIN_PAGE)
                .await?;
            entries.iter().for_each(|entry| verifier.push(entry));
            match entries.last() {
                Some(last) if entries.len() == CHAIN_PAGE as usize => after = last.seq,
                _ => return Ok(verifier.finish()),
            }
        }
    }
}

fn concurrent_changes() -> ClaimDecisionError {
    ClaimDecisionError::Store(StoreError::Other(
        "the claim kept changing concurrently".into(),
    ))
}
