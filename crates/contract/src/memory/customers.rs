//! Customers in memory, emails unique per organization.

use super::*;

#[async_trait]
impl CustomerStore for MemoryStore {
    async fn insert_customer(&self, customer: &Customer, event: &Event) -> Result<(), StoreError> {
        self.insert_with_event(event, |state| {
            let id = customer.id.to_string();
            if state.customers.contains_key(&id) || email_taken(state, customer) {
                return Err(StoreError::Duplicate);
            }
            state.customers.insert(id, customer.clone());
            Ok(())
        })
    }

    async fn customer(&self, id: &CustomerId) -> Result<Option<Customer>, StoreError> {
        Ok(self.state().customers.get(id.as_str()).cloned())
    }

    async fn customer_by_email(
        &self,
        organization_id: &OrganizationId,
        email: &Email,
    ) -> Result<Option<Customer>, StoreError> {
        let normalized = email.normalized();
        Ok(self
            .state()
            .customers
            .values()
            .find(|customer| {
                &customer.organization_id == organization_id
                    && customer
                        .email
                        .as_ref()
                        .is_some_and(|email| email.normalized() == normalized)
            })
            .cloned())
    }

    async fn list_customers(
        &self,
        organization_id: &OrganizationId,
        email: Option<&Email>,
        page: &PageRequest,
    ) -> Result<Page<Customer>, StoreError> {
        let normalized = email.map(Email::normalized);
        let state = self.state();
        Ok(page_of(&state.customers, page, |customer| {
            let keep = &customer.organization_id == organization_id
                && normalized.as_ref().is_none_or(|wanted| {
                    customer
                        .email
                        .as_ref()
                        .is_some_and(|email| &email.normalized() == wanted)
                });
            keep.then_some(customer)
        }))
    }

    async fn update_customer(&self, customer: &Customer, event: &Event) -> Result<(), StoreError> {
        let mut state = self.state();
        let exists = state
            .customers
            .get(customer.id.as_str())
            .is_some_and(|stored| stored.organization_id == customer.organization_id);
        if !exists {
            return Err(inconsistent("the customer does not exist"));
        }
        if email_taken(&state, customer) {
            return Err(StoreError::Duplicate);
        }
        events_are_new(&state, &[event])?;
        if let Some(stored) = state.customers.get_mut(customer.id.as_str()) {
            stored.email = customer.email.clone();
            stored.name = customer.name.clone();
            stored.metadata = customer.metadata.clone();
            stored.updated_at = customer.updated_at;
        }
        store_event(&mut state, event, false);
        drop(state);
        self.committed();
        Ok(())
    }

    async fn delete_customer(&self, id: &CustomerId, event: &Event) -> Result<bool, StoreError> {
        let mut state = self.state();
        if !state.customers.contains_key(id.as_str()) {
            return Ok(false);
        }
        events_are_new(&state, &[event])?;
        if state.customers.remove(id.as_str()).is_none() {
            return Ok(false);
        }
        store_event(&mut state, event, false);
        drop(state);
        self.committed();
        Ok(true)
    }
}

/// Whether another customer of `customer`'s organization has its email (without regard to
/// case).
fn email_taken(state: &State, customer: &Customer) -> bool {
    let Some(email) = customer.email.as_ref().map(Email::normalized) else {
        return false;
    };
    state.customers.values().any(|other| {
        other.id != customer.id
            && other.organization_id == customer.organization_id
            && other
                .email
                .as_ref()
                .is_some_and(|other| other.normalized() == email)
    })
}
