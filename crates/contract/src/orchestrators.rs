//! `OrchestratorStore`: orchestrators, their unique slugs and the look-up by slug.

use std::sync::Arc;

use mandate_domain::ids::OrchestratorId;
use mandate_domain::model::{KeyOwner, Orchestrator};
use mandate_domain::ports::{Store, StoreError};

use crate::fixtures::*;

async fn orchestrator_slugs_are_unique(store: Arc<dyn Store>) {
    let first = orchestrator();
    let key_one = key(KeyOwner::Orchestrator {
        orchestrator_id: first.id.clone(),
    });
    store.insert_orchestrator(&first, &key_one).await.unwrap();
    let twin = Orchestrator {
        id: OrchestratorId::generate(),
        ..first.clone()
    };
    let key_two = key(KeyOwner::Orchestrator {
        orchestrator_id: twin.id.clone(),
    });
    let refused = store.insert_orchestrator(&twin, &key_two).await;
    assert!(matches!(refused, Err(StoreError::Duplicate)), "{refused:?}");
    // Nothing of the refused write remains: not the orchestrator, not its key.
    assert_eq!(store.orchestrator(&twin.id).await.unwrap(), None);
    assert_eq!(store.key_by_hash(&key_two.hash).await.unwrap(), None);
    assert_eq!(store.orchestrator(&first.id).await.unwrap(), Some(first));
}
case!(orchestrator_slugs_are_unique);

async fn orchestrators_are_found_by_slug(store: Arc<dyn Store>) {
    let orchestrator = seed_orchestrator(&*store).await;
    let other = seed_orchestrator(&*store).await;
    assert_eq!(
        store
            .orchestrator_by_slug(&orchestrator.slug)
            .await
            .unwrap(),
        Some(orchestrator)
    );
    assert_eq!(
        store.orchestrator_by_slug(&other.slug).await.unwrap(),
        Some(other)
    );
    assert_eq!(
        store
            .orchestrator_by_slug(&unique_slug("nobody"))
            .await
            .unwrap(),
        None
    );
}
case!(orchestrators_are_found_by_slug);
