//! Claims, signature nonces and the ledger in memory.

use super::*;

#[async_trait]
impl ClaimStore for MemoryStore {
    async fn submit_claim(
        &self,
        claim: &Claim,
        nonce: &str,
        event: &Event,
    ) -> Result<ClaimSubmission, StoreError> {
        let mut state = self.state();
        let nonce = (claim.orchestrator_id.to_string(), nonce.to_owned());
        if state.claim_nonces.contains(&nonce) {
            return Ok(ClaimSubmission::NonceReused);
        }
        let live: Vec<Claim> = state
            .claims
            .values()
            .filter(|found| {
                found.status.is_live()
                    && found.destination_id == claim.destination_id
                    && found.orchestrator_id == claim.orchestrator_id
                    && (found.public_key == claim.public_key || found.agent_id == claim.agent_id)
            })
            .cloned()
            .collect();
        let live_count = live.len();
        // The nonce is recorded whatever the outcome, unless the write fails.
        if let Some(existing) = live
            .into_iter()
            .find(|found| found.public_key == claim.public_key)
        {
            state.claim_nonces.insert(nonce);
            return Ok(ClaimSubmission::Existing(Box::new(existing)));
        }
        if live_count > 0 {
            state.claim_nonces.insert(nonce);
            return Ok(ClaimSubmission::AgentIdTaken);
        }
        let id = claim.id.to_string();
        if state.claims.contains_key(&id) {
            return Err(StoreError::Duplicate);
        }
        events_are_new(&state, &[event])?;
        state.claim_nonces.insert(nonce);
        state.claims.insert(id, claim.clone());
        store_event(&mut state, event, false);
        drop(state);
        self.committed();
        Ok(ClaimSubmission::Created)
    }

    async fn claim(&self, id: &ClaimId) -> Result<Option<Claim>, StoreError> {
        Ok(self.state().claims.get(id.as_str()).cloned())
    }

    async fn list_claims(
        &self,
        scope: &ClientScope,
        status: Option<ClaimStatus>,
        page: &PageRequest,
    ) -> Result<Page<Claim>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.claims, page, |claim| {
            let keep = scope.contains(
                &claim.organization_id,
                &claim.destination_id,
                &claim.orchestrator_id,
            ) && status.is_none_or(|status| status == claim.status);
            keep.then_some(claim)
        }))
    }

    async fn approve_claim(
        &self,
        claim: &Claim,
        expected_version: u64,
        client: &Client,
        max_agents: u32,
        events: &[Event],
    ) -> Result<ClaimApproval, StoreError> {
        let mut state = self.state();
        let approved = state
            .claims
            .values()
            .filter(|found| {
                found.destination_id == claim.destination_id
                    && found.status == ClaimStatus::Approved
            })
            .count();
        let approved_agents = u32::try_from(approved).unwrap_or(u32::MAX);
        if approved_agents >= max_agents {
            return Ok(ClaimApproval::Full { approved_agents });
        }
        let current = state
            .claims
            .get(claim.id.as_str())
            .is_some_and(|stored| stored.version == expected_version);
        if !current {
            return Ok(ClaimApproval::Stale);
        }
        let client_id = client.id.to_string();
        if state.clients.contains_key(&client_id) {
            return Err(StoreError::Duplicate);
        }
        events_are_new(&state, &events.iter().collect::<Vec<_>>())?;
        queue_ledger(&mut state, claim, events)?;
        state.clients.insert(client_id, client.clone());
        state.claims.insert(claim.id.to_string(), claim.clone());
        for event in events {
            store_event(&mut state, event, false);
        }
        drop(state);
        self.committed();
        Ok(ClaimApproval::Approved {
            approved_agents: approved_agents.saturating_add(1),
        })
    }

    async fn update_claim(
        &self,
        claim: &Claim,
        expected_version: u64,
        client: Option<(&Client, u64)>,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let claim_current = state
            .claims
            .get(claim.id.as_str())
            .is_some_and(|stored| stored.version == expected_version);
        let client_current = client.is_none_or(|(client, version)| {
            state
                .clients
                .get(client.id.as_str())
                .is_some_and(|stored| stored.version == version)
        });
        if !claim_current || !client_current {
            return Ok(false);
        }
        events_are_new(&state, &events.iter().collect::<Vec<_>>())?;
        queue_ledger(&mut state, claim, events)?;
        state.claims.insert(claim.id.to_string(), claim.clone());
        if let Some((client, _)) = client {
            state.clients.insert(client.id.to_string(), client.clone());
        }
        for event in events {
            store_event(&mut state, event, false);
        }
        drop(state);
        self.committed();
        Ok(true)
    }

    async fn claims_due_for_expiry(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Claim>, StoreError> {
        let state = self.state();
        let mut pending: Vec<&Claim> = state
            .claims
            .values()
            .filter(|claim| claim.status == ClaimStatus::Pending && claim.pending_expires_at <= now)
            .collect();
        pending.sort_by_key(|claim| claim.pending_expires_at);
        let mut approved: Vec<&Claim> = state
            .claims
            .values()
            .filter(|claim| {
                claim.status == ClaimStatus::Approved
                    && claim.expires_at.is_some_and(|at| at <= now)
            })
            .collect();
        approved.sort_by_key(|claim| claim.expires_at);
        Ok(pending
            .into_iter()
            .take(limit as usize)
            .chain(approved.into_iter().take(limit as usize))
            .cloned()
            .collect())
    }

    async fn record_signature_nonce(
        &self,
        key: &AgentKey,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let entry = (key.to_string(), nonce.to_owned());
        if state.signature_nonces.contains_key(&entry) {
            return Ok(false);
        }
        state.signature_nonces.insert(entry, now);
        Ok(true)
    }

    async fn purge_signature_nonces(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut state = self.state();
        let count = state.signature_nonces.len();
        state.signature_nonces.retain(|_, at| *at >= before);
        Ok((count - state.signature_nonces.len()) as u64)
    }
}

#[async_trait]
impl Ledger for MemoryStore {
    async fn append_queued(&self, limit: u32) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut state = self.state();
        let taken: Vec<String> = state
            .ledger_queue
            .keys()
            .take(limit as usize)
            .cloned()
            .collect();
        let mut appended = Vec::with_capacity(taken.len());
        let mut claim_ids = Vec::with_capacity(taken.len());
        for event_id in taken {
            let Some(record) = state.ledger_queue.remove(&event_id) else {
                continue;
            };
            claim_ids.push(record.claim_id.clone());
            let chain = state
                .ledger
                .entry(record.organization_id.to_string())
                .or_default();
            let entry = LedgerEntry::append(record, chain.last());
            chain.push(entry.clone());
            appended.push(entry);
        }
        for claim_id in claim_ids {
            let still_queued = state
                .ledger_queue
                .values()
                .any(|record| record.claim_id == claim_id);
            if still_queued {
                continue;
            }
            if let Some(claim) = state.claims.get_mut(claim_id.as_str()) {
                claim.ledger_status = Some(LedgerStatus::Recorded);
            }
        }
        Ok(appended)
    }

    async fn ledger_entries(
        &self,
        organization_id: &OrganizationId,
        destination_id: Option<&DestinationId>,
        page: &PageRequest,
    ) -> Result<Page<LedgerEntry>, StoreError> {
        let cursor = match page.starting_after.as_deref().map(str::parse::<u64>) {
            Some(Ok(seq)) => Some(seq),
            Some(Err(_)) => return Ok(empty_page()),
            None => None,
        };
        let limit = page_limit(page);
        let state = self.state();
        let Some(chain) = state.ledger.get(organization_id.as_str()) else {
            return Ok(empty_page());
        };
        let mut data: Vec<LedgerEntry> = chain
            .iter()
            .rev()
            .filter(|entry| cursor.is_none_or(|cursor| entry.seq < cursor))
            .filter(|entry| destination_id.is_none_or(|id| &entry.destination_id == id))
            .take(limit + 1)
            .cloned()
            .collect();
        let has_more = data.len() > limit;
        data.truncate(limit);
        Ok(Page::of(data, has_more))
    }

    async fn ledger_chain(
        &self,
        organization_id: &OrganizationId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let state = self.state();
        Ok(state
            .ledger
            .get(organization_id.as_str())
            .map(|chain| {
                chain
                    .iter()
                    .filter(|entry| entry.seq > after)
                    .take(limit as usize)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }
}
