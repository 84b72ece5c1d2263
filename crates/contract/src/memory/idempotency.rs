//! Keyed calls and their stored answers in memory.

use super::*;

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn begin_keyed(self: Arc<Self>, call: &KeyedCall) -> Result<KeyedStart, StoreError> {
        let entry = (call.scope.clone(), call.key.clone());
        {
            let mut state = self.state();
            if let Some(record) = state.idempotency.get(&entry) {
                return Ok(KeyedStart::Answered(IdempotencyStart::of_record(
                    &record.fingerprint,
                    &call.fingerprint,
                    record.response.clone(),
                )));
            }
            if !state.keyed_calls.insert(entry.clone()) {
                return Ok(KeyedStart::Answered(IdempotencyStart::InFlight));
            }
        }
        Ok(KeyedStart::Run(Box::new(MemoryKeyedWrite {
            store: self,
            entry,
        })))
    }

    async fn lookup_idempotent(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<IdempotencyStart>, StoreError> {
        Ok(self
            .state()
            .idempotency
            .get(&(scope.to_owned(), key.to_owned()))
            .map(|record| {
                IdempotencyStart::of_record(
                    &record.fingerprint,
                    fingerprint,
                    record.response.clone(),
                )
            }))
    }

    async fn record_idempotent(&self, answer: &IdempotentAnswer) -> Result<bool, StoreError> {
        let mut state = self.state();
        let entry = (answer.scope.clone(), answer.key.clone());
        if state.idempotency.contains_key(&entry) {
            return Ok(false);
        }
        state
            .idempotency
            .insert(entry, IdempotencyRecord::answered(answer));
        Ok(true)
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut state = self.state();
        let count = state.idempotency.len();
        state
            .idempotency
            .retain(|_, record| record.created_at >= before);
        Ok((count - state.idempotency.len()) as u64)
    }
}
