//! Organizations, orchestrators and destinations in memory.

use super::*;

#[async_trait]
impl OrganizationStore for MemoryStore {
    async fn insert_organization(
        &self,
        organization: &Organization,
        platform_key: &ApiKey,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let id = organization.id.to_string();
        if state.organizations.contains_key(&id)
            || state.keys.contains_key(&platform_key.id.to_string())
        {
            return Err(StoreError::Duplicate);
        }
        state.organizations.insert(id, organization.clone());
        state
            .keys
            .insert(platform_key.id.to_string(), platform_key.clone());
        Ok(())
    }

    async fn organization(&self, id: &OrganizationId) -> Result<Option<Organization>, StoreError> {
        Ok(self.state().organizations.get(id.as_str()).cloned())
    }

    async fn list_organizations(
        &self,
        filter: &OrganizationFilter,
        page: &PageRequest,
    ) -> Result<Page<Organization>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.organizations, page, |organization| {
            filter
                .name
                .as_ref()
                .is_none_or(|name| &organization.name == name)
                .then_some(organization)
        }))
    }
}

#[async_trait]
impl OrchestratorStore for MemoryStore {
    async fn insert_orchestrator(
        &self,
        orchestrator: &Orchestrator,
        key: &ApiKey,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let id = orchestrator.id.to_string();
        if state.orchestrators.contains_key(&id)
            || state
                .orchestrators
                .values()
                .any(|stored| stored.slug == orchestrator.slug)
            || state.keys.contains_key(&key.id.to_string())
        {
            return Err(StoreError::Duplicate);
        }
        state.orchestrators.insert(id, orchestrator.clone());
        state.keys.insert(key.id.to_string(), key.clone());
        Ok(())
    }

    async fn orchestrator(&self, id: &OrchestratorId) -> Result<Option<Orchestrator>, StoreError> {
        Ok(self.state().orchestrators.get(id.as_str()).cloned())
    }

    async fn orchestrator_by_slug(&self, slug: &Slug) -> Result<Option<Orchestrator>, StoreError> {
        Ok(self
            .state()
            .orchestrators
            .values()
            .find(|orchestrator| &orchestrator.slug == slug)
            .cloned())
    }

    async fn list_orchestrators(
        &self,
        filter: &OrchestratorFilter,
        page: &PageRequest,
    ) -> Result<Page<Orchestrator>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.orchestrators, page, |orchestrator| {
            let slug = filter
                .slug
                .as_ref()
                .is_none_or(|slug| &orchestrator.slug == slug);
            let name = filter
                .name
                .as_ref()
                .is_none_or(|name| &orchestrator.name == name);
            (slug && name).then_some(orchestrator)
        }))
    }
}

#[async_trait]
impl DestinationStore for MemoryStore {
    async fn insert_destination(&self, destination: &Destination) -> Result<(), StoreError> {
        let mut state = self.state();
        let id = destination.id.to_string();
        if state.destinations.contains_key(&id)
            || state
                .destinations
                .values()
                .any(|stored| stored.slug == destination.slug)
        {
            return Err(StoreError::Duplicate);
        }
        state.destinations.insert(id, destination.clone());
        Ok(())
    }

    async fn destination(&self, id: &DestinationId) -> Result<Option<Destination>, StoreError> {
        Ok(self.state().destinations.get(id.as_str()).cloned())
    }

    async fn list_destinations(
        &self,
        scope: &DestinationScope,
        page: &PageRequest,
    ) -> Result<Page<Destination>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.destinations, page, |destination| {
            let keep = match scope {
                DestinationScope::Organization(id) => &destination.organization_id == id,
                DestinationScope::One(id) => &destination.id == id,
                DestinationScope::Nothing => false,
            };
            keep.then_some(destination)
        }))
    }

    async fn destination_by_slug(&self, slug: &Slug) -> Result<Option<Destination>, StoreError> {
        Ok(self
            .state()
            .destinations
            .values()
            .find(|destination| &destination.slug == slug)
            .cloned())
    }

    async fn update_destination(&self, destination: &Destination) -> Result<(), StoreError> {
        let mut state = self.state();
        if let Some(stored) = state
            .destinations
            .get_mut(destination.id.as_str())
            .filter(|stored| stored.organization_id == destination.organization_id)
        {
            stored.display_name = destination.display_name.clone();
            stored.payment_address = destination.payment_address.clone();
            stored.max_agents = destination.max_agents;
            stored.pending_claim_ttl_seconds = destination.pending_claim_ttl_seconds;
            stored.updated_at = destination.updated_at;
        }
        Ok(())
    }
}
