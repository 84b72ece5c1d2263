//! Agent claims, signature nonces and the ledger.

use super::*;

/// What submitting a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimSubmission {
    /// The claim and its event were stored.
    Created,
    /// The orchestrator used this body nonce before; nothing was stored.
    NonceReused,
    /// A pending or approved claim for the same destination, orchestrator and key exists;
    /// nothing but the nonce was stored.
    Existing(Box<Claim>),
    /// The agent id has a pending or approved claim with another key; nothing was stored.
    AgentIdTaken,
}

/// What approving a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimApproval {
    /// Approved; the destination now has this many approved agents.
    Approved {
        /// Approved claims of the destination, this one included.
        approved_agents: u32,
    },
    /// The destination already has `max_agents` approved agents; nothing was written.
    Full {
        /// Approved claims of the destination.
        approved_agents: u32,
    },
    /// The claim changed since it was read; nothing was written.
    Stale,
}

/// Claims and the nonces of agent signatures.
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// In one transaction: records the orchestrator's body `nonce` (once ever), then stores
    /// `claim` and its `claim.submitted` event unless a live claim with its key or agent id
    /// exists on the same destination and orchestrator.
    async fn submit_claim(
        &self,
        claim: &Claim,
        nonce: &str,
        event: &Event,
    ) -> Result<ClaimSubmission, StoreError>;

    /// One claim.
    async fn claim(&self, id: &ClaimId) -> Result<Option<Claim>, StoreError>;

    /// The claims in `scope` (the same scope as client IDs), optionally of one status,
    /// newest first.
    async fn list_claims(
        &self,
        scope: &ClientScope,
        status: Option<ClaimStatus>,
        page: &PageRequest,
    ) -> Result<Page<Claim>, StoreError>;

    /// In one transaction: unless the destination already has `max_agents` approved claims,
    /// saves the approved `claim` (provided its stored version is `expected_version`), stores
    /// the agent's `client`, the `events` and the claim's ledger record.
    async fn approve_claim(
        &self,
        claim: &Claim,
        expected_version: u64,
        client: &Client,
        max_agents: u32,
        events: &[Event],
    ) -> Result<ClaimApproval, StoreError>;

    /// Saves a changed claim (`status`, `ledger_status`, `version`, `updated_at`) with its
    /// events and its ledger record if its state has one, and the agent's changed client ID
    /// if given (checked against its expected version), provided the stored claim is still at
    /// `expected_version`; `false`, with nothing written, when another change came first.
    async fn update_claim(
        &self,
        claim: &Claim,
        expected_version: u64,
        client: Option<(&Client, u64)>,
        events: &[Event],
    ) -> Result<bool, StoreError>;

    /// Pending claims past their `pending_expires_at` and approved ones past their
    /// `expires_at` at `now`, at most `limit` of each.
    async fn claims_due_for_expiry(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Claim>, StoreError>;

    /// Records that `key` used the signature `nonce`; `false` when it already had.
    async fn record_signature_nonce(
        &self,
        key: &AgentKey,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Forgets signature nonces recorded before `before` (signatures that old are refused
    /// anyway); returns how many.
    async fn purge_signature_nonces(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// The tamper-evident ledger: per-organization SHA-256 hash chains of approvals and
/// revocations. The database adapter keeps the chain; an external anchor (a blockchain, a
/// transparency log) can be added by another implementation that also publishes each head.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Appends up to `limit` queued records to their organizations' chains, oldest first,
    /// marks their claims `recorded`, and returns the new entries. Concurrent callers never
    /// fork a chain.
    async fn append_queued(&self, limit: u32) -> Result<Vec<LedgerEntry>, StoreError>;

    /// An organization's entries (only one destination's when given), newest first;
    /// `page.starting_after` is a `seq`.
    async fn ledger_entries(
        &self,
        organization_id: &OrganizationId,
        destination_id: Option<&DestinationId>,
        page: &PageRequest,
    ) -> Result<Page<LedgerEntry>, StoreError>;

    /// Up to `limit` entries of an organization's chain with `seq > after`, oldest first.
    async fn ledger_chain(
        &self,
        organization_id: &OrganizationId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError>;
}
