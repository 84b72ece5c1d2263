//! Claims, the nonces of submissions and agent signatures, and the ledger: the queue written
//! with each approval or revocation, and the per-organization hash chains appended from it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::{delete, insert_into, update};
use diesel_async::RunQueryDsl;
use mandate_domain::agents::AgentKey;
use mandate_domain::claims::{
    Claim, ClaimStatus, LedgerAction, LedgerEntry, LedgerRecord, LedgerStatus,
};
use mandate_domain::events::Event;
use mandate_domain::ids::{
    ClaimId, ClientId, DestinationId, EventId, OrchestratorId, OrganizationId,
};
use mandate_domain::model::Client;
use mandate_domain::policy::ClientScope;
use mandate_domain::ports::{
    ClaimApproval, ClaimStore, ClaimSubmission, Ledger, Page, PageRequest, StoreError,
};
use mandate_domain::values::Slug;

use crate::DbStore;
use crate::clients::{
    ClientChanges, ClientFilter, ClientRow, permission_set, permissions_text, save_client,
};
use crate::dialect::{Dialect, Row};
use crate::errors::Error;
use crate::outbox::{Outbox, db_write};
use crate::page::{all, db_page, empty_page, into_page, page_limit, sql_limit};
use crate::pool::{db_first, db_run, db_transaction};
use crate::rows::{At, Maybe, Spelled, parsed, same_fields, to_i64, to_u64};
use crate::schema::{
    claim_nonces, claims, client_ids, ledger_entries, ledger_queue, signature_nonces,
};
use crate::sql::IndexPredicate;

/// The live claims, spelled as in the partial unique indexes' predicate.
const LIVE: IndexPredicate = IndexPredicate("status IN ('pending', 'approved')");
/// The expiry queues, spelled as in the partial indexes' predicates.
const PENDING: IndexPredicate = IndexPredicate("status = 'pending'");
const APPROVED: IndexPredicate = IndexPredicate("status = 'approved'");

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = claims, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
struct ClaimRow {
    #[diesel(deserialize_as = String, serialize_as = String)]
    id: ClaimId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    organization_id: OrganizationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    destination_id: DestinationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    namespace: Slug,
    #[diesel(deserialize_as = String, serialize_as = String)]
    orchestrator_id: OrchestratorId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    service: Slug,
    #[diesel(deserialize_as = String, serialize_as = String)]
    public_key: AgentKey,
    agent_id: String,
    agent_name: String,
    subject: Option<String>,
    ip_address: String,
    #[diesel(deserialize_as = At, serialize_as = At)]
    pending_expires_at: DateTime<Utc>,
    #[diesel(embed)]
    changes: ClaimChanges,
    #[diesel(deserialize_as = At, serialize_as = At)]
    created_at: DateTime<Utc>,
}

impl TryFrom<&Claim> for ClaimRow {
    type Error = Error;
    fn try_from(claim: &Claim) -> Result<Self, Error> {
        Ok(Self {
            id: claim.id.clone(),
            organization_id: claim.organization_id.clone(),
            destination_id: claim.destination_id.clone(),
            namespace: claim.namespace.clone(),
            orchestrator_id: claim.orchestrator_id.clone(),
            service: claim.service.clone(),
            public_key: claim.public_key.clone(),
            agent_id: claim.agent_id.clone(),
            agent_name: claim.agent_name.clone(),
            subject: claim.subject.clone(),
            ip_address: claim.ip_address.to_string(),
            pending_expires_at: claim.pending_expires_at,
            changes: ClaimChanges::try_from(claim)?,
            created_at: claim.created_at,
        })
    }
}

impl TryFrom<ClaimRow> for Claim {
    type Error = Error;
    fn try_from(row: ClaimRow) -> Result<Self, Error> {
        let changes = row.changes;
        Ok(Claim {
            ip_address: parsed("ip address", &row.ip_address, str::parse)?,
            permissions: permission_set(&changes.permissions)?,
            version: to_u64("claim version", changes.version)?,
            id: row.id,
            organization_id: row.organization_id,
            destination_id: row.destination_id,
            namespace: row.namespace,
            orchestrator_id: row.orchestrator_id,
            service: row.service,
            public_key: row.public_key,
            agent_id: row.agent_id,
            agent_name: row.agent_name,
            subject: row.subject,
            status: changes.status,
            client_id: changes.client_id,
            pending_expires_at: row.pending_expires_at,
            expires_at: changes.expires_at,
            ledger_status: changes.ledger_status,
            created_at: row.created_at,
            updated_at: changes.updated_at,
        })
    }
}

/// The changeable fields of a claim.
#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = claims, treat_none_as_null = true)]
#[diesel(treat_none_as_default_value = false)]
struct ClaimChanges {
    permissions: String,
    #[diesel(deserialize_as = Spelled, serialize_as = Spelled)]
    status: ClaimStatus,
    #[diesel(deserialize_as = Maybe<String>, serialize_as = Maybe<String>)]
    client_id: Option<ClientId>,
    #[diesel(deserialize_as = Maybe<At>, serialize_as = Maybe<At>)]
    expires_at: Option<DateTime<Utc>>,
    #[diesel(deserialize_as = Maybe<Spelled>, serialize_as = Maybe<Spelled>)]
    ledger_status: Option<LedgerStatus>,
    version: i64,
    #[diesel(deserialize_as = At, serialize_as = At)]
    updated_at: DateTime<Utc>,
}

impl TryFrom<&Claim> for ClaimChanges {
    type Error = Error;
    fn try_from(claim: &Claim) -> Result<Self, Error> {
        Ok(Self {
            permissions: permissions_text(&claim.permissions),
            status: claim.status,
            client_id: claim.client_id.clone(),
            expires_at: claim.expires_at,
            ledger_status: claim.ledger_status,
            version: to_i64("claim version", claim.version)?,
            updated_at: claim.updated_at,
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = ledger_queue, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
struct LedgerQueueRow {
    #[diesel(deserialize_as = String, serialize_as = String)]
    event_id: EventId,
    #[diesel(embed)]
    record: LedgerRecordColumns,
}

/// The columns of a [`LedgerRecord`], queued or in the chain.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = ledger_queue, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
struct LedgerRecordColumns {
    #[diesel(deserialize_as = String, serialize_as = String)]
    organization_id: OrganizationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    destination_id: DestinationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    claim_id: ClaimId,
    #[diesel(deserialize_as = Spelled, serialize_as = Spelled)]
    action: LedgerAction,
    #[diesel(deserialize_as = String, serialize_as = String)]
    public_key: AgentKey,
    #[diesel(deserialize_as = At, serialize_as = At)]
    at: DateTime<Utc>,
}

same_fields!(
    LedgerRecord,
    LedgerRecordColumns {
        organization_id,
        destination_id,
        claim_id,
        action,
        public_key,
        at,
    }
);

impl LedgerQueueRow {
    /// The queue row of `claim`'s current state, keyed by the id of its claim event.
    fn of(claim: &Claim, events: &[Event]) -> Result<Option<Self>, Error> {
        let Some(record) = claim.ledger_record() else {
            return Ok(None);
        };
        let event = events
            .first()
            .ok_or_else(|| Error::Data("a ledger record needs its claim event".into()))?;
        Ok(Some(Self {
            event_id: event.id.clone(),
            record: LedgerRecordColumns::from(&record),
        }))
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = ledger_entries, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_default_value = false)]
struct LedgerEntryRow {
    #[diesel(deserialize_as = String, serialize_as = String)]
    organization_id: OrganizationId,
    seq: i64,
    #[diesel(deserialize_as = String, serialize_as = String)]
    destination_id: DestinationId,
    #[diesel(deserialize_as = String, serialize_as = String)]
    claim_id: ClaimId,
    #[diesel(deserialize_as = Spelled, serialize_as = Spelled)]
    action: LedgerAction,
    #[diesel(deserialize_as = String, serialize_as = String)]
    public_key: AgentKey,
    #[diesel(deserialize_as = At, serialize_as = At)]
    at: DateTime<Utc>,
    prev_hash: String,
    hash: String,
}

impl TryFrom<&LedgerEntry> for LedgerEntryRow {
    type Error = Error;
    fn try_from(entry: &LedgerEntry) -> Result<Self, Error> {
        Ok(Self {
            organization_id: entry.organization_id.clone(),
            seq: to_i64("ledger seq", entry.seq)?,
            destination_id: entry.destination_id.clone(),
            claim_id: entry.claim_id.clone(),
            action: entry.action,
            public_key: entry.public_key.clone(),
            at: entry.at,
            prev_hash: entry.prev_hash.clone(),
            hash: entry.hash.clone(),
        })
    }
}

impl TryFrom<LedgerEntryRow> for LedgerEntry {
    type Error = Error;
    fn try_from(row: LedgerEntryRow) -> Result<Self, Error> {
        Ok(LedgerEntry {
            seq: to_u64("ledger seq", row.seq)?,
            organization_id: row.organization_id,
            destination_id: row.destination_id,
            claim_id: row.claim_id,
            action: row.action,
            public_key: row.public_key,
            at: row.at,
            prev_hash: row.prev_hash,
            hash: row.hash,
        })
    }
}

/// Saves a claim's `changes`, provided its stored version is still `expected`; whether it was.
async fn save_claim<C: Dialect>(
    conn: &mut C,
    id: &str,
    expected: i64,
    changes: ClaimChanges,
) -> QueryResult<bool> {
    let updated = conn
        .run(
            update(claims::table.find(id))
                .filter(claims::version.eq(expected))
                .set(changes),
        )
        .await?;
    Ok(updated > 0)
}

/// Stores a claim change's events and the ledger record it queues (approvals and revocations).
async fn store_with_ledger<C: Dialect>(
    conn: &mut C,
    outbox: &Outbox,
    queued: Option<LedgerQueueRow>,
) -> QueryResult<()> {
    outbox.store(conn).await?;
    if let Some(queued) = queued {
        conn.run(insert_into(ledger_queue::table).values(queued))
            .await?;
    }
    Ok(())
}

/// A transaction's body asked for a rollback: another change came first.
fn stale() -> Error {
    Error::Query(diesel::result::Error::RollbackTransaction)
}

/// Whether a transaction was rolled back by [`stale`].
fn is_stale(error: &StoreError) -> bool {
    matches!(error, StoreError::Other(cause) if matches!(
        cause.downcast_ref::<Error>(),
        Some(Error::Query(diesel::result::Error::RollbackTransaction))
    ))
}

#[async_trait]
impl ClaimStore for DbStore {
    async fn submit_claim(
        &self,
        claim: &Claim,
        nonce: &str,
        event: &Event,
    ) -> Result<ClaimSubmission, StoreError> {
        // A concurrent submission of the same key can pass the check below and lose the race
        // at the unique index: the second try then finds the winner.
        let mut attempts = 2;
        loop {
            attempts -= 1;
            match self.try_submit_claim(claim, nonce, event).await {
                Err(StoreError::Duplicate) if attempts > 0 => {}
                other => return other,
            }
        }
    }

    async fn claim(&self, id: &ClaimId) -> Result<Option<Claim>, StoreError> {
        let id = id.to_string();
        db_first!(self, ClaimRow, claims::table.find(&id))
    }

    async fn list_claims(
        &self,
        scope: &ClientScope,
        status: Option<ClaimStatus>,
        page: &PageRequest,
    ) -> Result<Page<Claim>, StoreError> {
        let Some(filter) = ClientFilter::of(scope) else {
            return Ok(empty_page());
        };
        let status = status.map(ClaimStatus::as_str);
        db_page!(self, page, claims, ClaimRow, ClaimId, |query| {
            query = match &filter {
                ClientFilter::Organization(id) => query.filter(claims::organization_id.eq(id)),
                ClientFilter::Destination(id) => query.filter(claims::destination_id.eq(id)),
                ClientFilter::Orchestrator(id) => query.filter(claims::orchestrator_id.eq(id)),
            };
            if let Some(status) = status {
                query = query.filter(claims::status.eq(status));
            }
        })
    }

    async fn approve_claim(
        &self,
        claim: &Claim,
        expected_version: u64,
        client: &Client,
        max_agents: u32,
        events: &[Event],
    ) -> Result<ClaimApproval, StoreError> {
        let id = claim.id.to_string();
        let destination_id = claim.destination_id.to_string();
        let changes = ClaimChanges::try_from(claim)?;
        let expected = to_i64("claim version", expected_version)?;
        let client = ClientRow::try_from(client)?;
        let queued = LedgerQueueRow::of(claim, events)?;
        let outbox = Outbox::of(events)?;
        let max_agents = i64::from(max_agents);
        let result = db_write!(self, outbox, |conn| {
            // Held until commit: concurrent approvals on this destination count after us.
            conn.lock_row(Row::Destination(&destination_id)).await?;
            let approved: i64 = claims::table
                .select(count_star())
                .filter(claims::destination_id.eq(&destination_id))
                .filter(APPROVED)
                .get_result(conn)
                .await?;
            let approved_agents = u32::try_from(approved).unwrap_or(u32::MAX);
            if approved >= max_agents {
                return Ok(ClaimApproval::Full { approved_agents });
            }
            // The claim references its client ID: the client ID goes first.
            conn.run(insert_into(client_ids::table).values(client))
                .await?;
            if !save_claim(conn, &id, expected, changes).await? {
                return Err(stale());
            }
            store_with_ledger(conn, &outbox, queued).await?;
            Ok(ClaimApproval::Approved {
                approved_agents: approved_agents.saturating_add(1),
            })
        });
        match result {
            Err(error) if is_stale(&error) => Ok(ClaimApproval::Stale),
            other => other,
        }
    }

    async fn update_claim(
        &self,
        claim: &Claim,
        expected_version: u64,
        client: Option<(&Client, u64)>,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let id = claim.id.to_string();
        let changes = ClaimChanges::try_from(claim)?;
        let expected = to_i64("claim version", expected_version)?;
        let client = client
            .map(|(client, version)| {
                Ok::<_, Error>((
                    client.id.to_string(),
                    ClientChanges::try_from(client)?,
                    to_i64("client version", version)?,
                ))
            })
            .transpose()?;
        let outbox = Outbox::of(events)?;
        let queued = LedgerQueueRow::of(claim, events)?;
        let result = db_write!(self, outbox, |conn| {
            if !save_claim(conn, &id, expected, changes).await? {
                return Ok(false);
            }
            if let Some((id, changes, version)) = client
                && !save_client(conn, &id, version, changes).await?
            {
                return Err(stale());
            }
            store_with_ledger(conn, &outbox, queued).await?;
            Ok(true)
        });
        match result {
            Err(error) if is_stale(&error) => Ok(false),
            other => other,
        }
    }

    async fn claims_due_for_expiry(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Claim>, StoreError> {
        let now = At::from(now);
        let limit = i64::from(limit);
        db_run!(self, |conn| {
            let mut rows = claims::table
                .filter(PENDING)
                .filter(claims::pending_expires_at.le(now))
                .order(claims::pending_expires_at.asc())
                .limit(limit)
                .select(ClaimRow::as_select())
                .load(conn)
                .await?;
            rows.extend(
                claims::table
                    .filter(APPROVED)
                    .filter(claims::expires_at.le(now))
                    .order(claims::expires_at.asc())
                    .limit(limit)
                    .select(ClaimRow::as_select())
                    .load(conn)
                    .await?,
            );
            all(rows)
        })
    }

    async fn record_signature_nonce(
        &self,
        key: &AgentKey,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let key = key.to_string();
        let nonce = nonce.to_owned();
        let now = At::from(now);
        db_run!(self, |conn| {
            let inserted = insert_into(signature_nonces::table)
                .values((
                    signature_nonces::public_key.eq(&key),
                    signature_nonces::nonce.eq(&nonce),
                    signature_nonces::created_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            Ok(inserted == 1)
        })
    }

    async fn purge_signature_nonces(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = At::from(before);
        db_run!(self, |conn| {
            let purged = conn
                .run(
                    delete(signature_nonces::table).filter(signature_nonces::created_at.lt(before)),
                )
                .await?;
            Ok(u64::try_from(purged).unwrap_or(u64::MAX))
        })
    }
}

impl DbStore {
    async fn try_submit_claim(
        &self,
        claim: &Claim,
        nonce: &str,
        event: &Event,
    ) -> Result<ClaimSubmission, StoreError> {
        let row = ClaimRow::try_from(claim)?;
        let outbox = Outbox::of(std::slice::from_ref(event))?;
        let nonce = nonce.to_owned();
        db_write!(self, outbox, |conn| {
            let recorded = insert_into(claim_nonces::table)
                .values((
                    claim_nonces::orchestrator_id.eq(row.orchestrator_id.as_str()),
                    claim_nonces::nonce.eq(&nonce),
                    claim_nonces::created_at.eq(At::from(row.created_at)),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if recorded == 0 {
                return Ok(ClaimSubmission::NonceReused);
            }
            let mut live = claims::table
                .select(ClaimRow::as_select())
                .filter(claims::destination_id.eq(row.destination_id.as_str()))
                .filter(claims::orchestrator_id.eq(row.orchestrator_id.as_str()))
                .filter(
                    claims::public_key
                        .eq(row.public_key.as_str())
                        .or(claims::agent_id.eq(&row.agent_id)),
                )
                .filter(LIVE)
                .load(conn)
                .await?;
            if let Some(same_key) = live
                .iter()
                .position(|found| found.public_key == row.public_key)
            {
                let existing = Claim::try_from(live.swap_remove(same_key))?;
                return Ok(ClaimSubmission::Existing(Box::new(existing)));
            }
            if !live.is_empty() {
                return Ok(ClaimSubmission::AgentIdTaken);
            }
            outbox
                .store_with(conn, insert_into(claims::table).values(row))
                .await?;
            Ok(ClaimSubmission::Created)
        })
    }
}

#[async_trait]
impl Ledger for DbStore {
    async fn append_queued(&self, limit: u32) -> Result<Vec<LedgerEntry>, StoreError> {
        let limit = i64::from(limit);
        db_transaction!(self, |conn| {
            // Held until commit: a concurrent step waits, then finds these gone.
            let ids = conn.lock_ledger_queue(limit).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let queued: Vec<LedgerQueueRow> = ledger_queue::table
                .filter(ledger_queue::event_id.eq_any(&ids))
                .order(ledger_queue::event_id.asc())
                .select(LedgerQueueRow::as_select())
                .load(conn)
                .await?;
            let mut heads: BTreeMap<OrganizationId, Option<LedgerEntry>> = BTreeMap::new();
            let mut appended = Vec::with_capacity(queued.len());
            let mut claim_ids = Vec::with_capacity(queued.len());
            for row in queued {
                let record = LedgerRecord::from(row.record);
                if !heads.contains_key(&record.organization_id) {
                    let head = ledger_entries::table
                        .filter(ledger_entries::organization_id.eq(record.organization_id.as_str()))
                        .order(ledger_entries::seq.desc())
                        .select(LedgerEntryRow::as_select())
                        .first(conn)
                        .await
                        .optional()?
                        .map(LedgerEntry::try_from)
                        .transpose()?;
                    heads.insert(record.organization_id.clone(), head);
                }
                let organization_id = record.organization_id.clone();
                claim_ids.push(record.claim_id.to_string());
                let previous = heads.get(&organization_id).and_then(Option::as_ref);
                let entry = LedgerEntry::append(record, previous);
                conn.run(
                    insert_into(ledger_entries::table).values(LedgerEntryRow::try_from(&entry)?),
                )
                .await?;
                heads.insert(organization_id, Some(entry.clone()));
                appended.push(entry);
            }
            conn.run(delete(
                ledger_queue::table.filter(ledger_queue::event_id.eq_any(&ids)),
            ))
            .await?;
            // A claim whose later change is still queued stays `queued`.
            let still_queued: Vec<String> = ledger_queue::table
                .filter(ledger_queue::claim_id.eq_any(&claim_ids))
                .select(ledger_queue::claim_id)
                .load(conn)
                .await?;
            claim_ids.retain(|id| !still_queued.contains(id));
            conn.run(
                update(claims::table.filter(claims::id.eq_any(&claim_ids)))
                    .set(claims::ledger_status.eq(LedgerStatus::Recorded.as_str())),
            )
            .await?;
            Ok(appended)
        })
    }

    async fn ledger_entries(
        &self,
        organization_id: &OrganizationId,
        destination_id: Option<&DestinationId>,
        page: &PageRequest,
    ) -> Result<Page<LedgerEntry>, StoreError> {
        let organization_id = organization_id.to_string();
        let destination_id = destination_id.map(ToString::to_string);
        let limit = page_limit(page);
        // The cursor is a seq; one that is not a number starts nowhere.
        let cursor = match page.starting_after.as_deref().map(str::parse::<i64>) {
            Some(Ok(seq)) => Some(seq),
            Some(Err(_)) => return Ok(empty_page()),
            None => None,
        };
        db_run!(self, |conn| {
            let mut query = ledger_entries::table
                .filter(ledger_entries::organization_id.eq(&organization_id))
                .select(LedgerEntryRow::as_select())
                .order(ledger_entries::seq.desc())
                .limit(sql_limit(limit + 1))
                .into_boxed();
            if let Some(destination_id) = &destination_id {
                query = query.filter(ledger_entries::destination_id.eq(destination_id));
            }
            if let Some(cursor) = cursor {
                query = query.filter(ledger_entries::seq.lt(cursor));
            }
            into_page(query.load(conn).await?, limit)
        })
    }

    async fn ledger_chain(
        &self,
        organization_id: &OrganizationId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let organization_id = organization_id.to_string();
        let after = to_i64("ledger seq", after)?;
        let limit = i64::from(limit);
        db_run!(self, |conn| {
            let rows: Vec<LedgerEntryRow> = ledger_entries::table
                .filter(ledger_entries::organization_id.eq(&organization_id))
                .filter(ledger_entries::seq.gt(after))
                .order(ledger_entries::seq.asc())
                .limit(limit)
                .select(LedgerEntryRow::as_select())
                .load(conn)
                .await?;
            all(rows)
        })
    }
}
