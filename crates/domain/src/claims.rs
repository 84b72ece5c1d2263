//! Claims: an agent's request, submitted by an orchestrator, to act for a destination. The
//! destination's owner approves (creating a client ID whose only credential is the agent's
//! key), rejects or later revokes it; approvals and revocations go to a per-organization
//! hash-chained ledger.

use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::agents::AgentKey;
use crate::ids::{ClaimId, ClientId, DestinationId, OrchestratorId, OrganizationId};
use crate::values::{PermissionSet, Slug};

/// Where a claim stands: `pending → approved | rejected | expired`,
/// `approved → revoked | expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// Waiting for the owner's decision.
    Pending,
    /// Approved: the agent acts through its client ID.
    Approved,
    /// Refused by the owner.
    Rejected,
    /// Approval withdrawn by the owner; the client ID is revoked.
    Revoked,
    /// Not decided in time, or an approval that reached its `expires_at`.
    Expired,
}

impl ClaimStatus {
    /// Every status.
    pub const ALL: [ClaimStatus; 5] = [
        ClaimStatus::Pending,
        ClaimStatus::Approved,
        ClaimStatus::Rejected,
        ClaimStatus::Revoked,
        ClaimStatus::Expired,
    ];

    /// The status's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Pending => "pending",
            ClaimStatus::Approved => "approved",
            ClaimStatus::Rejected => "rejected",
            ClaimStatus::Revoked => "revoked",
            ClaimStatus::Expired => "expired",
        }
    }

    /// Parses the API name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }

    /// Pending and approved claims hold their key and agent id: a second claim with them is
    /// the same claim, or a conflict.
    pub fn is_live(self) -> bool {
        matches!(self, ClaimStatus::Pending | ClaimStatus::Approved)
    }
}

/// Whether a claim's last approval or revocation is in the ledger yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerStatus {
    /// Waiting for the background step that appends it.
    Queued,
    /// Appended to the organization's chain.
    Recorded,
}

impl LedgerStatus {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerStatus::Queued => "queued",
            LedgerStatus::Recorded => "recorded",
        }
    }

    /// Parses the API name.
    pub fn parse(value: &str) -> Option<Self> {
        [LedgerStatus::Queued, LedgerStatus::Recorded]
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// An agent's authorization request; it serializes to its API shape (`object: "claim"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "object", rename = "claim")]
pub struct Claim {
    /// `clm_…`
    pub id: ClaimId,
    /// The destination's organization.
    #[serde(skip)]
    pub organization_id: OrganizationId,
    /// The destination the agent wants to act for.
    pub destination_id: DestinationId,
    /// The destination's slug, as submitted.
    pub namespace: Slug,
    /// The submitting orchestrator.
    pub orchestrator_id: OrchestratorId,
    /// The submitting orchestrator's slug.
    pub service: Slug,
    /// The agent's key; after approval, the client ID's only credential.
    pub public_key: AgentKey,
    /// The agent's id within the service.
    pub agent_id: String,
    /// The agent's display name.
    pub agent_name: String,
    /// Whom the agent acts for, if the service says.
    pub subject: Option<String>,
    /// The address the agent asked from, as the service reports it.
    pub ip_address: IpAddr,
    /// Requested permissions; after approval, the granted ones.
    pub permissions: PermissionSet,
    /// Where it stands.
    pub status: ClaimStatus,
    /// The client ID created by approval.
    pub client_id: Option<ClientId>,
    /// When a pending claim expires undecided.
    pub pending_expires_at: DateTime<Utc>,
    /// When an approval ends, if the owner set a limit.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the last approval or revocation is in the ledger.
    pub ledger_status: Option<LedgerStatus>,
    /// Bumped by every change (optimistic concurrency).
    #[serde(skip)]
    pub version: u64,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A transition the claim's status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimTransitionError {
    /// Only pending claims can be approved or rejected.
    #[error("the claim is {0}, not pending")]
    NotPending(&'static str),
    /// Only approved claims can be revoked.
    #[error("the claim is {0}, not approved")]
    NotApproved(&'static str),
}

/// What an approval grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The client ID created for the agent.
    pub client_id: ClientId,
    /// The granted permissions (a subset of the requested ones).
    pub permissions: PermissionSet,
    /// When the approval ends, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Claim {
    /// Approves a pending claim; its last change goes to the ledger queue.
    pub fn approve(
        &mut self,
        grant: Grant,
        now: DateTime<Utc>,
    ) -> Result<(), ClaimTransitionError> {
        if self.status != ClaimStatus::Pending {
            return Err(ClaimTransitionError::NotPending(self.status.as_str()));
        }
        self.status = ClaimStatus::Approved;
        self.client_id = Some(grant.client_id);
        self.permissions = grant.permissions;
        self.expires_at = grant.expires_at;
        self.ledger_status = Some(LedgerStatus::Queued);
        self.touch(now);
        Ok(())
    }

    /// Rejects a pending claim.
    pub fn reject(&mut self, now: DateTime<Utc>) -> Result<(), ClaimTransitionError> {
        if self.status != ClaimStatus::Pending {
            return Err(ClaimTransitionError::NotPending(self.status.as_str()));
        }
        self.status = ClaimStatus::Rejected;
        self.touch(now);
        Ok(())
    }

    /// Revokes an approved claim; the revocation goes to the ledger queue.
    pub fn revoke(&mut self, now: DateTime<Utc>) -> Result<(), ClaimTransitionError> {
        if self.status != ClaimStatus::Approved {
            return Err(ClaimTransitionError::NotApproved(self.status.as_str()));
        }
        self.status = ClaimStatus::Revoked;
        self.ledger_status = Some(LedgerStatus::Queued);
        self.touch(now);
        Ok(())
    }

    /// Whether the expiry job should expire it at `now`.
    pub fn is_due_for_expiry(&self, now: DateTime<Utc>) -> bool {
        match self.status {
            ClaimStatus::Pending => self.pending_expires_at <= now,
            ClaimStatus::Approved => self.expires_at.is_some_and(|at| at <= now),
            _ => false,
        }
    }

    /// Expires a claim that is due; an approval's end goes to the ledger queue. Returns the
    /// status it left, or `None` (changing nothing) when it was not due.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Option<ClaimStatus> {
        if !self.is_due_for_expiry(now) {
            return None;
        }
        let previous = self.status;
        self.status = ClaimStatus::Expired;
        if previous == ClaimStatus::Approved {
            self.ledger_status = Some(LedgerStatus::Queued);
        }
        self.touch(now);
        Some(previous)
    }

    /// The ledger record of the claim's current state, for an approval, a revocation or the
    /// end of an approval; `None` for other states.
    pub fn ledger_record(&self) -> Option<LedgerRecord> {
        let action = match self.status {
            ClaimStatus::Approved => LedgerAction::Approved,
            ClaimStatus::Revoked => LedgerAction::Revoked,
            ClaimStatus::Expired if self.client_id.is_some() => LedgerAction::Expired,
            _ => return None,
        };
        Some(LedgerRecord {
            organization_id: self.organization_id.clone(),
            destination_id: self.destination_id.clone(),
            claim_id: self.id.clone(),
            action,
            public_key: self.public_key.clone(),
            at: self.updated_at,
        })
    }

    fn touch(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = now;
    }
}

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerAction {
    /// An agent was approved.
    Approved,
    /// An approval was revoked.
    Revoked,
    /// An approval reached its `expires_at`.
    Expired,
}

impl LedgerAction {
    /// The name in the API and in the hashed form.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerAction::Approved => "approved",
            LedgerAction::Revoked => "revoked",
            LedgerAction::Expired => "expired",
        }
    }

    /// Parses the name.
    pub fn parse(value: &str) -> Option<Self> {
        [
            LedgerAction::Approved,
            LedgerAction::Revoked,
            LedgerAction::Expired,
        ]
        .into_iter()
        .find(|action| action.as_str() == value)
    }
}

/// A change waiting to be appended to its organization's chain (written in the transaction
/// of the change, like an event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    /// The chain it goes to.
    pub organization_id: OrganizationId,
    /// The destination of the claim.
    pub destination_id: DestinationId,
    /// The claim.
    pub claim_id: ClaimId,
    /// What happened.
    pub action: LedgerAction,
    /// The agent's key.
    pub public_key: AgentKey,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// The `prev_hash` of an organization's first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry of an organization's chain: `hash = SHA-256(prev_hash ‖ canonical entry)`, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// 1, 2, 3… within the organization.
    pub seq: u64,
    /// The organization whose chain this is.
    pub organization_id: OrganizationId,
    /// The destination of the claim.
    pub destination_id: DestinationId,
    /// The claim.
    pub claim_id: ClaimId,
    /// What happened.
    pub action: LedgerAction,
    /// The agent's key.
    pub public_key: AgentKey,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The previous entry's hash ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

impl LedgerEntry {
    /// The entry that appends `record` after `previous` (the chain's head, if any).
    pub fn append(record: LedgerRecord, previous: Option<&LedgerEntry>) -> LedgerEntry {
        let (seq, prev_hash) = previous.map_or((1, GENESIS_HASH.to_owned()), |head| {
            (head.seq + 1, head.hash.clone())
        });
        let mut entry = LedgerEntry {
            seq,
            organization_id: record.organization_id,
            destination_id: record.destination_id,
            claim_id: record.claim_id,
            action: record.action,
            public_key: record.public_key,
            at: record.at,
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry.computed_hash();
        entry
    }

    /// The canonical form that is hashed: a JSON object with its keys in lexical order,
    /// timestamps in RFC 3339 with microseconds.
    pub fn canonical(&self) -> String {
        serde_json::json!({
            "action": self.action.as_str(),
            "at": self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "claim_id": self.claim_id.as_str(),
            "destination_id": self.destination_id.as_str(),
            "organization_id": self.organization_id.as_str(),
            "public_key": self.public_key.as_str(),
            "seq": self.seq,
        })
        .to_string()
    }

    /// SHA-256 of `prev_hash ‖ canonical entry`, in lower-case hex, from the stored fields.
    pub fn computed_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(self.canonical().as_bytes());
        hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// The verdict on a chain: `valid` when every entry's `seq` follows the previous one, its
/// `prev_hash` is the previous entry's hash and its hash matches its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainCheck {
    /// Whether the whole chain holds.
    pub valid: bool,
    /// How many entries were checked.
    pub entries: u64,
    /// The last entry's hash (`null` for an empty chain).
    pub head: Option<String>,
}

/// Checks a chain entry by entry, oldest first, so that a long chain can be read in pages.
///
/// One for a destination ([`ChainVerifier::for_destination`]) still checks every link of the
/// organization's chain — a removed or reordered entry of the destination shows only as a
/// broken link — but reports the destination's own entries only: `entries` counts them and
/// `head` is the hash of its newest one, so nothing of a sibling destination is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainVerifier {
    check: ChainCheck,
    /// The destination whose entries are reported, with their count and newest hash.
    reported: Option<(DestinationId, u64, Option<String>)>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            check: ChainCheck {
                valid: true,
                entries: 0,
                head: None,
            },
            reported: None,
        }
    }
}

impl ChainVerifier {
    /// A verifier that checks the whole chain and reports `destination_id`'s entries only.
    pub fn for_destination(destination_id: DestinationId) -> Self {
        Self {
            reported: Some((destination_id, 0, None)),
            ..Self::default()
        }
    }

    /// Checks the next entry against the ones before it.
    pub fn push(&mut self, entry: &LedgerEntry) {
        let expected_previous = self.check.head.as_deref().unwrap_or(GENESIS_HASH);
        let holds = entry.seq == self.check.entries + 1
            && entry.prev_hash == expected_previous
            && entry.hash == entry.computed_hash();
        self.check.valid &= holds;
        self.check.entries += 1;
        self.check.head = Some(entry.hash.clone());
        if let Some((destination_id, entries, head)) = &mut self.reported {
            if &entry.destination_id == destination_id {
                *entries += 1;
                *head = Some(entry.hash.clone());
            }
        }
    }

    /// The verdict so far.
    pub fn finish(self) -> ChainCheck {
        match self.reported {
            None => self.check,
            Some((_, entries, head)) => ChainCheck {
                valid: self.check.valid,
                entries,
                head,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn key() -> AgentKey {
        AgentKey::parse("ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=").unwrap()
    }

    fn claim(now: DateTime<Utc>) -> Claim {
        Claim {
            id: ClaimId::generate(),
            organization_id: OrganizationId::generate(),
            destination_id: DestinationId::generate(),
            namespace: Slug::parse("acme").unwrap(),
            orchestrator_id: OrchestratorId::generate(),
            service: Slug::parse("agentco").unwrap(),
            public_key: key(),
            agent_id: "agent-1".into(),
            agent_name: "Agent One".into(),
            subject: None,
            ip_address: "192.0.2.1".parse().unwrap(),
            permissions: PermissionSet::default_for_new_client(),
            status: ClaimStatus::Pending,
            client_id: None,
            pending_expires_at: now + Duration::seconds(60),
            expires_at: None,
            ledger_status: None,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    fn grant(expires_at: Option<DateTime<Utc>>) -> Grant {
        Grant {
            client_id: ClientId::generate(),
            permissions: PermissionSet::default_for_new_client(),
            expires_at,
        }
    }

    #[test]
    fn lifecycle_follows_the_status_machine() {
        let now = crate::now();
        let mut approved = claim(now);
        approved.approve(grant(None), now).unwrap();
        assert_eq!(approved.status, ClaimStatus::Approved);
        assert_eq!(approved.ledger_status, Some(LedgerStatus::Queued));
        assert_eq!(
            approved.approve(grant(None), now),
            Err(ClaimTransitionError::NotPending("approved"))
        );
        assert_eq!(
            approved.reject(now),
            Err(ClaimTransitionError::NotPending("approved"))
        );
        approved.revoke(now).unwrap();
        assert_eq!(
            approved.revoke(now),
            Err(ClaimTransitionError::NotApproved("revoked"))
        );
        assert_eq!(approved.version, 3);

        let mut rejected = claim(now);
        rejected.reject(now).unwrap();
        assert_eq!(
            rejected.revoke(now),
            Err(ClaimTransitionError::NotApproved("rejected"))
        );
        assert_eq!(rejected.ledger_record(), None);
    }

    #[test]
    fn pending_claims_expire_after_their_ttl_and_approvals_at_expires_at() {
        let now = crate::now();
        let mut pending = claim(now);
        assert_eq!(pending.expire(now), None);
        assert_eq!(
            pending.expire(now + Duration::seconds(60)),
            Some(ClaimStatus::Pending)
        );
        assert_eq!(pending.ledger_record(), None);

        let mut approved = claim(now);
        approved
            .approve(grant(Some(now + Duration::seconds(5))), now)
            .unwrap();
        assert_eq!(approved.expire(now + Duration::seconds(4)), None);
        let later = now + Duration::seconds(5);
        assert_eq!(approved.expire(later), Some(ClaimStatus::Approved));
        let record = approved.ledger_record().unwrap();
        assert_eq!((record.action, record.at), (LedgerAction::Expired, later));
    }

    fn chain(length: usize) -> Vec<LedgerEntry> {
        let now = crate::now();
        let mut entries: Vec<LedgerEntry> = Vec::new();
        for _ in 0..length {
            let mut claim = claim(now);
            claim.approve(grant(None), now).unwrap();
            let record = claim.ledger_record().unwrap();
            entries.push(LedgerEntry::append(record, entries.last()));
        }
        entries
    }

    fn verify(entries: &[LedgerEntry]) -> ChainCheck {
        let mut verifier = ChainVerifier::default();
        entries.iter().for_each(|entry| verifier.push(entry));
        verifier.finish()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let entries = chain(4);
        assert_eq!(entries[0].prev_hash, GENESIS_HASH);
        assert_eq!(entries[3].seq, 4);
        let check = verify(&entries);
        assert_eq!(
            check,
            ChainCheck {
                valid: true,
                entries: 4,
                head: Some(entries[3].hash.clone()),
            }
        );
        assert_eq!(
            verify(&[]),
            ChainCheck {
                valid: true,
                entries: 0,
                head: None
            }
        );
    }

    #[test]
    fn any_edit_breaks_the_chain() {
        let entries = chain(3);
        let edits: [fn(&mut LedgerEntry); 5] = [
            |entry| entry.action = LedgerAction::Revoked,
            |entry| entry.at += Duration::microseconds(1),
            |entry| entry.seq += 1,
            |entry| entry.prev_hash = GENESIS_HASH.replace('0', "1"),
            |entry| entry.hash = entry.hash.replace(|c: char| c.is_ascii_digit(), "a"),
        ];
        for edit in edits {
            let mut edited = entries.clone();
            edit(&mut edited[1]);
            assert!(!verify(&edited).valid, "{:?}", edited[1]);
        }
        let mut dropped = entries.clone();
        dropped.remove(1);
        assert!(!verify(&dropped).valid);
    }
}
