//! Console sessions in memory, by the keyed hash of their token.

use mandate_domain::sessions::ConsoleSessionStore;

use super::*;

#[async_trait]
impl ConsoleSessionStore for MemoryStore {
    async fn insert_console_session(&self, session: &ConsoleSession) -> Result<(), StoreError> {
        self.state()
            .console_sessions
            .insert(session.token_hash.clone(), session.clone());
        Ok(())
    }

    async fn console_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        Ok(self.state().console_sessions.get(token_hash).cloned())
    }

    async fn delete_console_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        Ok(self.state().console_sessions.remove(token_hash).is_some())
    }

    async fn purge_console_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut state = self.state();
        let count = state.console_sessions.len();
        state
            .console_sessions
            .retain(|_, session| session.expires_at > now);
        Ok((count - state.console_sessions.len()) as u64)
    }
}
