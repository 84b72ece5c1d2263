//! Payment requests, payments, payment links and the event list in memory.

use super::*;

#[async_trait]
impl RequestStore for MemoryStore {
    async fn insert_request(
        &self,
        request: &PaymentRequest,
        event: &Event,
    ) -> Result<(), StoreError> {
        self.insert_with_event(event, |state| {
            let id = request.id.to_string();
            if state.requests.contains_key(&id) {
                return Err(StoreError::Duplicate);
            }
            state.requests.insert(id, request.clone());
            Ok(())
        })
    }

    async fn request(&self, id: &RequestId) -> Result<Option<PaymentRequest>, StoreError> {
        Ok(self.state().requests.get(id.as_str()).cloned())
    }

    async fn list_requests(
        &self,
        scope: &RequestScope,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<PaymentRequest>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.requests, page, |request| {
            (scope.contains(request) && filter.matches(request)).then_some(request)
        }))
    }

    async fn update_request(
        &self,
        request: &PaymentRequest,
        expected_version: u64,
        payment: Option<&Payment>,
        event: &Event,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        if let Some(payment) = payment
            && state.payments.contains_key(&payment.id.to_string())
        {
            return Err(StoreError::Duplicate);
        }
        events_are_new(&state, &[event])?;
        match state.requests.get_mut(request.id.as_str()) {
            Some(stored) if stored.version == expected_version => *stored = request.clone(),
            _ => return Ok(false),
        }
        if let Some(payment) = payment {
            state
                .payments
                .insert(payment.id.to_string(), payment.clone());
        }
        store_event(&mut state, event, false);
        drop(state);
        self.committed();
        Ok(true)
    }

    async fn requests_due_for_expiry(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PaymentRequest>, StoreError> {
        let state = self.state();
        let mut due: Vec<&PaymentRequest> = state
            .requests
            .values()
            .filter(|request| request.status.is_pending())
            .filter(|request| request.expires_at.is_some_and(|at| at <= now))
            .collect();
        due.sort_by(|left, right| (left.expires_at, &left.id).cmp(&(right.expires_at, &right.id)));
        Ok(due.into_iter().take(limit as usize).cloned().collect())
    }

    async fn payments_of(&self, request_id: &RequestId) -> Result<Vec<Payment>, StoreError> {
        Ok(self
            .state()
            .payments
            .values()
            .filter(|payment| &payment.request_id == request_id)
            .cloned()
            .collect())
    }

    async fn insert_payment_link(&self, link: &PaymentLink) -> Result<(), StoreError> {
        let mut state = self.state();
        let id = link.id.to_string();
        if state.payment_links.contains_key(&id)
            || state
                .payment_links
                .values()
                .any(|stored| stored.token_hash == link.token_hash)
        {
            return Err(StoreError::Duplicate);
        }
        state.payment_links.insert(id, link.clone());
        Ok(())
    }

    async fn payment_link_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<PaymentLink>, StoreError> {
        Ok(self
            .state()
            .payment_links
            .values()
            .find(|link| link.token_hash == hash)
            .cloned())
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn events(&self, page: &PageRequest) -> Result<Page<Event>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.events, page, |stored| Some(&stored.event)))
    }

    async fn list_events(
        &self,
        scope: &EventScope,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<Event>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.events, page, |stored| {
            (scope.contains(&stored.event) && filter.matches(&stored.event))
                .then_some(&stored.event)
        }))
    }

    async fn event(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        Ok(self
            .state()
            .events
            .get(id.as_str())
            .map(|stored| stored.event.clone()))
    }
}
