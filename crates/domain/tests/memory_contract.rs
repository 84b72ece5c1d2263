//! The domain's port contract on the in-memory adapter: every case gets a fresh store.

// Helpers outside #[test] functions panic to fail the test, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use mandate_domain::memory::MemoryStore;
use mandate_domain::ports::Store;

/// A fresh store; nothing to clean up afterwards.
async fn memory_store() -> (Arc<dyn Store>, ()) {
    (Arc::new(MemoryStore::new()), ())
}

mandate_domain::store_contract_tests!(memory_store());

/// The in-memory store's own promise beyond the suite: `wait_for_work` ends at its timeout, or
/// earlier when a write may have made work ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_work_ends_at_the_timeout_or_on_a_write() {
    use std::time::{Duration, Instant};

    let store = Arc::new(MemoryStore::new());
    let started = Instant::now();
    mandate_domain::ports::WebhookStore::wait_for_work(&*store, Duration::from_millis(50)).await;
    assert!(started.elapsed() >= Duration::from_millis(50));

    let waiting = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            mandate_domain::ports::WebhookStore::wait_for_work(&*store, Duration::from_secs(30))
                .await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A write that may make work ready (a released attempt) wakes the waiter.
    mandate_domain::operations::DeliveryQueueStore::release_deliveries(&*store, &[])
        .await
        .expect("releasing nothing succeeds");
    let waited = waiting.await.ok();
    assert!(waited.is_some_and(|waited| waited < Duration::from_secs(10)));
}
