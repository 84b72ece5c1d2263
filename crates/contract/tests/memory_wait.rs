//! The in-memory store's own promise beyond the contract: `wait_for_work` ends at its timeout,
//! or earlier when a write may have made work ready.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mandate_contract::memory::MemoryStore;
use mandate_domain::operations::DeliveryQueueStore;
use mandate_domain::ports::WebhookStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_work_ends_at_the_timeout_or_on_a_write() {
    let store = Arc::new(MemoryStore::new());
    let started = Instant::now();
    store.wait_for_work(Duration::from_millis(50)).await;
    assert!(started.elapsed() >= Duration::from_millis(50));

    let waiting = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            store.wait_for_work(Duration::from_secs(30)).await;
            started.elapsed()
        })
    };
    // Gives the waiter time to start waiting; were it late, it would wait the full 30 s.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A write that may make work ready (a released attempt) wakes the waiter.
    store
        .release_deliveries(&[])
        .await
        .unwrap_or_else(|error| panic!("releasing nothing succeeds: {error}"));
    let waited = waiting.await.ok();
    assert!(waited.is_some_and(|waited| waited < Duration::from_secs(10)));
}
