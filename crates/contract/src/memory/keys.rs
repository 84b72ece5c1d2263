//! API keys and client IDs in memory.

use super::*;

#[async_trait]
impl KeyStore for MemoryStore {
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        Ok(self
            .state()
            .keys
            .values()
            .find(|key| key.hash == hash)
            .cloned())
    }

    async fn key_read(
        &self,
        key: KeyRef<'_>,
        client_id: Option<&ClientId>,
        request_id: Option<&RequestId>,
    ) -> Result<Option<KeyRead>, StoreError> {
        // One lock for every read, as the database reads them in one statement.
        let state = self.state();
        let found = match key {
            KeyRef::Hash(hash) => state.keys.values().find(|key| key.hash == hash),
            KeyRef::Id(id) => state.keys.get(id.as_str()),
        };
        Ok(found.map(|key| KeyRead {
            key: key.clone(),
            client: client_id.and_then(|id| state.clients.get(id.as_str()).cloned()),
            request: request_id.and_then(|id| state.requests.get(id.as_str()).cloned()),
        }))
    }

    async fn insert_key(
        &self,
        key: &ApiKey,
        max_active: Option<usize>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        if let Some(max_active) = max_active {
            let active = state
                .keys
                .values()
                .filter(|stored| owned_by(stored, &key.owner))
                .filter(|stored| stored.revoked_at.is_none())
                .filter(|stored| stored.expires_at.is_none_or(|at| at > now))
                .count();
            if active >= max_active {
                return Ok(false);
            }
        }
        let id = key.id.to_string();
        if state.keys.contains_key(&id) {
            return Err(StoreError::Duplicate);
        }
        state.keys.insert(id, key.clone());
        Ok(true)
    }

    async fn keys_of(&self, owner: &KeyOwner) -> Result<Vec<ApiKey>, StoreError> {
        Ok(self
            .state()
            .keys
            .values()
            .rev()
            .filter(|key| owned_by(key, owner))
            .cloned()
            .collect())
    }

    async fn revoke_key(
        &self,
        owner: &KeyOwner,
        id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<Option<ApiKey>, StoreError> {
        let mut state = self.state();
        let Some(key) = state
            .keys
            .get_mut(id.as_str())
            .filter(|key| owned_by(key, owner))
        else {
            return Ok(None);
        };
        // Only the first revocation sets the time.
        key.revoked_at.get_or_insert(at);
        Ok(Some(key.clone()))
    }

    async fn touch_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(key) = self.state().keys.get_mut(id.as_str()) {
            // Never moves backwards when touches race.
            if key.last_used_at.is_none_or(|last| last < at) {
                key.last_used_at = Some(at);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn insert_client(&self, client: &Client, event: &Event) -> Result<(), StoreError> {
        self.insert_with_event(event, |state| {
            let id = client.id.to_string();
            if state.clients.contains_key(&id) {
                return Err(StoreError::Duplicate);
            }
            state.clients.insert(id, client.clone());
            Ok(())
        })
    }

    async fn client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        Ok(self.state().clients.get(id.as_str()).cloned())
    }

    async fn client_with_approval_expiry(
        &self,
        id: &ClientId,
    ) -> Result<Option<(Client, Option<DateTime<Utc>>)>, StoreError> {
        let state = self.state();
        Ok(state.clients.get(id.as_str()).map(|client| {
            let expires_at = state
                .claims
                .values()
                .find(|claim| claim.client_id.as_ref() == Some(id))
                .and_then(|claim| claim.expires_at);
            (client.clone(), expires_at)
        }))
    }

    async fn list_clients(
        &self,
        scope: &ClientScope,
        status: Option<ClientStatus>,
        page: &PageRequest,
    ) -> Result<Page<Client>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.clients, page, |client| {
            let keep = scope.contains(
                &client.organization_id,
                &client.destination_id,
                &client.orchestrator_id,
            ) && status.is_none_or(|status| status == client.status);
            keep.then_some(client)
        }))
    }

    async fn update_client(
        &self,
        client: &Client,
        expected_version: u64,
        event: &Event,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        events_are_new(&state, &[event])?;
        match state.clients.get_mut(client.id.as_str()) {
            Some(stored) if stored.version == expected_version => *stored = client.clone(),
            _ => return Ok(false),
        }
        store_event(&mut state, event, false);
        drop(state);
        self.committed();
        Ok(true)
    }
}
