//! Webhook endpoints, their queue and the wait for work in memory.

use super::*;

/// Whether an endpoint belongs to `owner`.
fn endpoint_owned_by(endpoint: &WebhookEndpoint, owner: &EndpointOwner) -> bool {
    &endpoint.owner == owner
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn insert_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        let mut state = self.state();
        let id = endpoint.id.to_string();
        if state.endpoints.contains_key(&id) {
            return Err(StoreError::Duplicate);
        }
        if !endpoint_is_consistent(endpoint) {
            return Err(inconsistent(
                "an endpoint names an organization or destination its owner does not have",
            ));
        }
        state.endpoints.insert(id, endpoint.clone());
        Ok(())
    }

    async fn endpoint(&self, id: &EndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        Ok(self.state().endpoints.get(id.as_str()).cloned())
    }

    async fn endpoints_of(
        &self,
        owner: &EndpointOwner,
        within: Option<&PermissionSet>,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.endpoints, page, |endpoint| {
            (endpoint_owned_by(endpoint, owner)
                && endpoint_scope_fits(endpoint.scope.as_ref(), within))
            .then_some(endpoint)
        }))
    }

    async fn endpoints_of_organization(
        &self,
        organization_id: &OrganizationId,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.endpoints, page, |endpoint| {
            let keep = match &endpoint.owner {
                EndpointOwner::Platform {
                    organization_id: owner,
                }
                | EndpointOwner::Destination {
                    organization_id: owner,
                    ..
                } => owner == organization_id,
                EndpointOwner::Client { .. } | EndpointOwner::Orchestrator { .. } => false,
            };
            keep.then_some(endpoint)
        }))
    }

    async fn update_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        let mut state = self.state();
        if let Some(stored) = state.endpoints.get_mut(endpoint.id.as_str()) {
            stored.url = endpoint.url.clone();
            stored.event_types = endpoint.event_types.clone();
            stored.description = endpoint.description.clone();
            stored.enabled = endpoint.enabled;
            stored.secret = endpoint.secret.clone();
            stored.previous_secret = endpoint.previous_secret.clone();
            stored.previous_secret_expires_at = endpoint.previous_secret_expires_at;
            stored.updated_at = endpoint.updated_at;
        }
        Ok(())
    }

    async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state.endpoints.remove(id.as_str()).is_none() {
            return Ok(false);
        }
        // Its attempts go with it.
        state
            .deliveries
            .retain(|_, stored| &stored.delivery.endpoint_id != id);
        Ok(true)
    }

    async fn candidate_endpoints(&self, event: &Event) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let state = self.state();
        let audience = &event.audience;
        // Customer events are seen through any client ID of the organization, the others
        // through a client ID of their destination.
        let organization_wide =
            audience.destination_id.is_none() || event.event_type.family() == "customer";
        let linked: BTreeSet<&OrchestratorId> = state
            .clients
            .values()
            .filter(|client| {
                if organization_wide {
                    audience.organization_id.as_ref() == Some(&client.organization_id)
                } else {
                    audience.destination_id.as_ref() == Some(&client.destination_id)
                }
            })
            .map(|client| &client.orchestrator_id)
            .collect();
        Ok(state
            .endpoints
            .values()
            .filter(|endpoint| endpoint.enabled && endpoint.created_at <= event.created_at)
            .filter(|endpoint| {
                let in_organization = audience.organization_id.is_some()
                    && endpoint.organization_id == audience.organization_id;
                let orchestrator = match &endpoint.owner {
                    EndpointOwner::Orchestrator { orchestrator_id } => {
                        audience.orchestrator_id.as_ref() == Some(orchestrator_id)
                            || linked.contains(orchestrator_id)
                    }
                    _ => false,
                };
                in_organization || orchestrator
            })
            .cloned()
            .collect())
    }

    async fn claim_events_for_fanout(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<Event>, StoreError> {
        let until = lease_end(now, lease);
        let mut state = self.state();
        Ok(state
            .events
            .values_mut()
            .filter(|stored| !stored.fanned_out)
            .filter(|stored| stored.lease_until.is_none_or(|at| at <= now))
            .take(limit as usize)
            .map(|stored| {
                stored.lease_until = Some(until);
                stored.event.clone()
            })
            .collect())
    }

    async fn record_fanout(
        &self,
        fanouts: &[Fanout],
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<EventId>, StoreError> {
        let until = lease_end(now, lease);
        let mut state = self.state();
        // Only the first worker to finish fans an event out.
        let open: Vec<&Fanout> = fanouts
            .iter()
            .filter(|fanout| {
                state
                    .events
                    .get(fanout.event_id.as_str())
                    .is_some_and(|stored| !stored.fanned_out)
            })
            .collect();
        let attempts: Vec<&Delivery> = open.iter().flat_map(|fanout| &fanout.deliveries).collect();
        deliveries_are_stored_whole(&state, &attempts, None)?;
        let mut marked = Vec::with_capacity(open.len());
        for fanout in open {
            if let Some(stored) = state.events.get_mut(fanout.event_id.as_str()) {
                stored.fanned_out = true;
                stored.lease_until = None;
                marked.push(fanout.event_id.clone());
            }
        }
        for delivery in attempts {
            state.deliveries.insert(
                delivery.id.to_string(),
                StoredDelivery {
                    delivery: delivery.clone(),
                    lease_until: Some(until),
                },
            );
        }
        // No wake-up: the attempts are leased to the caller, who sends them.
        Ok(marked)
    }

    async fn claim_due_deliveries_per_endpoint(
        &self,
        limit: u32,
        per_endpoint: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let until = lease_end(now, lease);
        let mut state = self.state();
        // What each endpoint has in flight already, taken from its room.
        let mut in_flight: BTreeMap<String, u32> = BTreeMap::new();
        for stored in state.deliveries.values() {
            if stored.delivery.status == DeliveryStatus::Pending
                && stored.lease_until.is_some_and(|at| at > now)
            {
                *in_flight
                    .entry(stored.delivery.endpoint_id.to_string())
                    .or_default() += 1;
            }
        }
        let mut due: Vec<(Option<DateTime<Utc>>, String)> = state
            .deliveries
            .iter()
            .filter(|(_, stored)| stored.delivery.status == DeliveryStatus::Pending)
            .filter(|(_, stored)| stored.delivery.next_attempt_at.is_some_and(|at| at <= now))
            .filter(|(_, stored)| stored.lease_until.is_none_or(|at| at <= now))
            .map(|(id, stored)| (stored.delivery.next_attempt_at, id.clone()))
            .collect();
        due.sort();
        let mut claimed = Vec::new();
        for (_, id) in due {
            if claimed.len() >= limit as usize {
                break;
            }
            let Some(stored) = state.deliveries.get(&id) else {
                continue;
            };
            let taken = in_flight
                .entry(stored.delivery.endpoint_id.to_string())
                .or_default();
            if *taken >= per_endpoint {
                continue;
            }
            *taken += 1;
            let (Some(event), Some(endpoint)) = (
                state.events.get(stored.delivery.event_id.as_str()),
                state.endpoints.get(stored.delivery.endpoint_id.as_str()),
            ) else {
                continue;
            };
            claimed.push(ClaimedDelivery {
                delivery: stored.delivery.clone(),
                event: event.event.clone(),
                endpoint: endpoint.clone(),
            });
            if let Some(stored) = state.deliveries.get_mut(&id) {
                stored.lease_until = Some(until);
            }
        }
        Ok(claimed)
    }

    async fn record_attempts(&self, recorded: &[RecordedAttempt]) -> Result<(), StoreError> {
        let mut state = self.state();
        // An attempt gone with its endpoint (deleted meanwhile) has no successor.
        let successors: Vec<&Delivery> = recorded
            .iter()
            .filter(|recorded| state.deliveries.contains_key(recorded.attempt.id.as_str()))
            .filter_map(|recorded| recorded.next.as_ref())
            .collect();
        deliveries_are_stored_whole(&state, &successors, None)?;
        for RecordedAttempt { attempt, .. } in recorded {
            if let Some(stored) = state.deliveries.get_mut(attempt.id.as_str()) {
                stored.delivery.status = attempt.status;
                stored.delivery.response_status = attempt.response_status;
                stored.delivery.response_body = attempt.response_body.clone();
                stored.delivery.duration_ms = attempt.duration_ms;
                stored.delivery.next_attempt_at = attempt.next_attempt_at;
                stored.lease_until = None;
            }
        }
        for next in successors {
            state.deliveries.insert(
                next.id.to_string(),
                StoredDelivery {
                    delivery: next.clone(),
                    lease_until: None,
                },
            );
        }
        drop(state);
        self.committed();
        Ok(())
    }

    async fn insert_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let mut state = self.state();
        let id = delivery.id.to_string();
        deliveries_are_stored_whole(&state, &[delivery], None)?;
        state.deliveries.insert(
            id,
            StoredDelivery {
                delivery: delivery.clone(),
                lease_until: None,
            },
        );
        drop(state);
        self.committed();
        Ok(())
    }

    async fn insert_direct_event(
        &self,
        event: &Event,
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let delivery_id = delivery.id.to_string();
        events_are_new(&state, &[event])?;
        deliveries_are_stored_whole(&state, &[delivery], Some(&event.id))?;
        // Its one attempt is stored with it: the fan-out has nothing to add.
        store_event(&mut state, event, true);
        state.deliveries.insert(
            delivery_id,
            StoredDelivery {
                delivery: delivery.clone(),
                lease_until: None,
            },
        );
        drop(state);
        self.committed();
        Ok(())
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        Ok(self
            .state()
            .deliveries
            .get(id.as_str())
            .map(|stored| stored.delivery.clone()))
    }

    async fn deliveries_of(
        &self,
        endpoint_id: &EndpointId,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError> {
        let state = self.state();
        Ok(page_of(&state.deliveries, page, |stored| {
            (&stored.delivery.endpoint_id == endpoint_id).then_some(&stored.delivery)
        }))
    }

    async fn wait_for_work(&self, timeout: std::time::Duration) {
        let signal = Arc::new(Mutex::new(Signal::default()));
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(signal.clone());
        // No runtime here: a plain thread ends the wait at the timeout (it sleeps on until then
        // even when a write ends the wait sooner; fine for the short waits of workers).
        let timer = signal.clone();
        let spawned = std::thread::Builder::new()
            .name("mandate-memory-wait".into())
            .spawn(move || {
                std::thread::sleep(timeout);
                signal_done(&timer);
            });
        if spawned.is_err() {
            // Without a timer, waiting could last forever: return at once instead.
            return;
        }
        Wait { signal }.await;
    }
}

#[async_trait]
impl DeliveryQueueStore for MemoryStore {
    async fn delivery_queue_stats(
        &self,
        now: DateTime<Utc>,
    ) -> Result<DeliveryQueueStats, StoreError> {
        let state = self.state();
        let mut stats = DeliveryQueueStats::default();
        for stored in state.deliveries.values() {
            let delivery = &stored.delivery;
            if delivery.status != DeliveryStatus::Pending {
                continue;
            }
            match delivery.next_attempt_at {
                Some(at) if at <= now => {
                    stats.due += 1;
                    stats.oldest_due_at = Some(stats.oldest_due_at.map_or(at, |old| old.min(at)));
                }
                Some(_) => stats.scheduled += 1,
                None => {}
            }
        }
        stats.events_awaiting_fanout = state
            .events
            .values()
            .filter(|stored| !stored.fanned_out)
            .count() as u64;
        Ok(stats)
    }

    async fn release_deliveries(&self, ids: &[DeliveryId]) -> Result<u64, StoreError> {
        let mut state = self.state();
        let mut released = 0;
        for id in ids {
            if let Some(stored) = state
                .deliveries
                .get_mut(id.as_str())
                .filter(|stored| stored.delivery.status == DeliveryStatus::Pending)
            {
                stored.lease_until = None;
                released += 1;
            }
        }
        drop(state);
        self.committed();
        Ok(released)
    }

    async fn postpone_deliveries(
        &self,
        ids: &[DeliveryId],
        until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        let mut postponed = 0;
        for id in ids {
            if let Some(stored) = state
                .deliveries
                .get_mut(id.as_str())
                .filter(|stored| stored.delivery.status == DeliveryStatus::Pending)
            {
                stored.lease_until = None;
                stored.delivery.next_attempt_at = Some(until);
                postponed += 1;
            }
        }
        Ok(postponed)
    }

    async fn purge_finished_deliveries(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        let mut finished: Vec<(DateTime<Utc>, String)> = state
            .deliveries
            .iter()
            .filter(|(_, stored)| stored.delivery.status != DeliveryStatus::Pending)
            .filter(|(_, stored)| stored.delivery.created_at < before)
            .map(|(id, stored)| (stored.delivery.created_at, id.clone()))
            .collect();
        finished.sort();
        finished.truncate(limit as usize);
        for (_, id) in &finished {
            state.deliveries.remove(id);
        }
        Ok(finished.len() as u64)
    }
}
